#!/usr/bin/env bash
# `make test-slurm`: slurm/train.sbatch on a real single-node Slurm cluster on this machine.
#
#  1. starts the cluster (slurm/local_cluster.sh: installs slurm-wlm + munge if missing);
#  2. a CPU debug run (debug=fast) must finish with exit 0;
#  3. a longer CPU run is pre-empted twice — USR1 (`scancel --signal=USR1`: Lightning saves an
#     hpc_ckpt and requeues) and `scontrol requeue` (SIGTERM: last.ckpt is saved) — while the same
#     run goes on uninterrupted as a second job; the pre-empted job must resume from its last state
#     each time and end with the same final step, the same per-step losses, one CSV version, one
#     log file and at most one hpc_ckpt;
#  4. stops the daemons by PID (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
work="${SLURM_TEST_DIR:-/tmp/pixperfect-slurm-test}"
rm -rf "$work/runs" "$work/out"
mkdir -p "$work/runs" "$work/out"
trap 'slurm/local_cluster.sh stop "$work/cluster"' EXIT
slurm/local_cluster.sh start "$work/cluster"
export SLURM_CONF="$work/cluster/slurm.conf"
export PIXPERFECT_RUNS_DIR="$work/runs" HF_HUB_OFFLINE=1 WANDB_MODE=offline
cpu=(--partition=cpu --gpus-per-node=0 --ntasks-per-node=1 --cpus-per-task=1)
tiny=(experiment=demo model=cmgan_tiny data.resolution=32 data.num_workers=0 trainer.enable_progress_bar=false
      export_dir=null final_evaluation=null)  # exports stay in the run folder

fail() { echo "FAIL: $*" >&2; exit 1; }
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1 || true; }
finished() { [[ -z "$(squeue -h -j "$1" 2>/dev/null)" ]]; }
changed() { [[ "$(stat -c %Y "$1")" != "$2" ]]; }
requeued() { [[ "$(job_field "$1" Restarts)" == "$2" && "$(job_field "$1" JobState)" == PENDING ]]; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds
    local limit="$1" what="$2"; shift 2
    for _ in $(seq "$((limit * 2))"); do "$@" && return 0; sleep 0.5; done
    fail "timed out after ${limit}s waiting for $what"
}

echo "--- 1. CPU debug run (debug=fast)"
t0=$SECONDS
sbatch --wait --job-name=debug --output="$work/out/%x-%j.out" "${cpu[@]}" slurm/train.sbatch \
    "${tiny[@]}" debug=fast >/dev/null || { cat "$work"/out/debug-*.out; fail "debug run failed"; }
echo "ok: debug run finished with exit 0 in $((SECONDS - t0))s"

echo "--- 2. pre-emption: USR1, then scontrol requeue"
long=("${tiny[@]}" data.batch_size=4 data.epoch_length=48 trainer.max_epochs=5 trainer.log_every_n_steps=1
      data.val_per_image=1 evaluate=false callbacks.simulation_preview=null module.image_log_every=0
      callbacks.last_checkpoint.every_n_train_steps=6)
ref=$(sbatch --parsable --job-name=reference --output="$work/out/%x-%j.out" "${cpu[@]}" slurm/train.sbatch "${long[@]}")
job=$(sbatch --parsable --job-name=preempted --output="$work/out/%x-%j.out" "${cpu[@]}" slurm/train.sbatch "${long[@]}")
run="$work/runs/run-$job"
log="$work/out/preempted-$job.out"
last="$run/checkpoints/last.ckpt"

wait_for 240 "the first last.ckpt of job $job" test -f "$last"
sleep 2
scancel --signal=USR1 "$job"
echo "sent USR1 to job $job"
wait_for 180 "job $job to be requeued after USR1" requeued "$job" 1
scontrol update JobId="$job" StartTime=now  # a requeued job otherwise waits ~2 min before it may start
wait_for 240 "job $job to run again after USR1" grep -q "restart 1 ===" "$log"
stamp=$(stat -c %Y "$last")
wait_for 240 "job $job to write a new last.ckpt after the USR1 restart" changed "$last" "$stamp"
scontrol requeue "$job"
echo "requeued job $job"
wait_for 180 "job $job to be requeued" requeued "$job" 2
scontrol update JobId="$job" StartTime=now
wait_for 240 "job $job to run again after scontrol requeue" grep -q "restart 2 ===" "$log"
wait_for 400 "jobs $ref and $job to finish" finished "$ref,$job"

for j in "$ref" "$job"; do
    state="$(job_field "$j" JobState)"; code="$(job_field "$j" ExitCode)"
    [[ "$state" == COMPLETED && "$code" == 0:0 ]] || { cat "$work"/out/*-"$j".out; fail "job $j ended $state ($code)"; }
done
[[ "$(grep -c '^resuming from ' "$log")" == 2 ]] || { cat "$log"; fail "the pre-empted job did not resume twice"; }
grep -q "stopped by SIGTERM" "$log" || fail "no SIGTERM save in $log"
"$repo/.venv/bin/python" - "$work/runs/run-$ref" "$run" <<'EOF'
import csv, sys
from pathlib import Path
import torch

def steps(run):
    versions = sorted(p.name for p in (Path(run) / "csv").iterdir())
    assert versions == ["version_0"], f"{run}: CSV versions {versions} (a requeue must not start a new one)"
    with open(Path(run) / "csv" / "version_0" / "metrics.csv", newline="") as f:
        return [(int(r["step"]), r["train/g_total"]) for r in csv.DictReader(f) if r.get("train/g_total")]

ref, pre = (steps(r) for r in sys.argv[1:])
final = [int(torch.load(Path(r) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
             ["state_dict"]["step_count"]) for r in sys.argv[1:]]
hpc = sorted(p.name for p in Path(sys.argv[2]).glob("hpc_ckpt_*.ckpt"))
print(f"reference: {len(ref)} steps logged, final step {final[0]}; pre-empted: {len(pre)} steps logged, "
      f"final step {final[1]}; hpc checkpoints left: {hpc}")
assert final[0] == final[1] == len(ref), "the pre-empted run did not end at the uninterrupted run's final step"
assert [s for s, _ in pre] == [s for s, _ in ref], "steps repeated or missing: a restart did not resume its last state"
assert pre == ref, "per-step losses differ from the uninterrupted run"
assert len(hpc) <= 1, f"old hpc checkpoints were not pruned: {hpc}"
EOF
echo "ok: pre-empted twice (USR1, requeue), resumed from its last state each time, same steps and losses as job $ref"
