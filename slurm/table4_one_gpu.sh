#!/bin/bash
#SBATCH --job-name=table4-one-gpu
#SBATCH --gpus=1
#SBATCH --cpus-per-task=16
#SBATCH --time=00:30:00
# Table 4 (the discriminative space's degree, per-channel or cross-channel) on ONE GPU, in minutes:
#   1. the training samples are simulated once (data.presimulated: learn_gpu's simulation of the shards'
#      first shard; float16, ~260 kB per 128² sample: N=48000 is ~12.6 GB on disk),
#   2. every row trains concurrently on those very samples (experiment=learn_gpu data=presimulated +
#      the row's one change), scored on the held-out sets at the same steps (BenchmarkCurve),
#   3. every row's export is evaluated on the benchmark with and without pool=8 (the pooling row).
# Usage (README "Ablations (Table 4)"):
#   SHARDS=.cache/shards/cbsd68_skip20 bash slurm/table4_one_gpu.sh
# Environment: SHARDS (shard folder, required), OUT (outputs/table4_one_gpu), N (samples, 48000),
#   AT (steps scored, [0,500,1000,1500,2000]), MAX_TIME (per row, 00:00:07:00), ROWS (names, all),
#   BENCH / SIM (held-out sets, eval_sets/cbsd20_bench_128 / eval_sets/cbsd20_sim_128), EXTRA (more
#   overrides for every row, e.g. a CPU check: EXTRA="trainer.accelerator=cpu data.batch_size=4").
set -euo pipefail
: "${SHARDS:?set SHARDS to a folder of shards made by python -m data.make_shards (README: cpu_small)}"
OUT=${OUT:-outputs/table4_one_gpu}
N=${N:-48000}
AT=${AT:-[0,500,1000,1500,2000]}
MAX_TIME=${MAX_TIME:-00:00:07:00}
BENCH=${BENCH:-eval_sets/cbsd20_bench_128}
SIM=${SIM:-eval_sets/cbsd20_sim_128}
EXTRA=${EXTRA:-}
export HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONUNBUFFERED=1

# one change per row on top of experiment=learn_gpu (cmgan_small + seam prior, pixel L1 + adversarial)
SPACE="loss=pixperfect loss.spaces.disc.warmup_steps=0 loss.spaces.disc.ramp_steps=250"
declare -A ROW=(
  [pixel]=""
  [d2]="$SPACE loss.spaces.disc.space.degree=2"
  [d6]="$SPACE loss.spaces.disc.space.degree=6"
  [d10]="$SPACE loss.spaces.disc.space.degree=10"
  [d2x]="$SPACE loss.spaces.disc.space.degree=2 loss.spaces.disc.space.cross_channel=true"
  [d6x]="$SPACE loss.spaces.disc.space.degree=6 loss.spaces.disc.space.cross_channel=true"
  [d10x]="$SPACE loss.spaces.disc.space.degree=10 loss.spaces.disc.space.cross_channel=true"
)
read -ra NAMES <<< "${ROWS:-pixel d2 d6 d10 d2x d6x d10x}"
for name in "${NAMES[@]}"; do
  [[ -v "ROW[$name]" ]] || { echo "unknown row $name (rows: ${!ROW[*]})" >&2; exit 2; }
  # a row folder from an earlier run would be resumed (its checkpoint, its spent max_time) and its curve appended to
  [ ! -e "$OUT/$name" ] || { echo "$OUT/$name exists from an earlier run: choose a new OUT (or remove it)" >&2; exit 2; }
done
if [ -f "$OUT/samples/meta.json" ] && ! grep -q "\"n\": $N," "$OUT/samples/meta.json"; then
  echo "$OUT/samples holds another sample count than N=$N: choose a new OUT (or N as written)" >&2; exit 2
fi

mkdir -p "$OUT/curves"
if [ ! -f "$OUT/samples/meta.json" ]; then
  echo "== simulating $N samples once"
  python -m data.presimulated "$OUT/samples" --n "$N" --workers "$(( $(nproc) - 1 ))" experiment=learn_gpu \
    "data.train_shards='$SHARDS/shard-{000000..000000}.tar'"
fi

echo "== training ${NAMES[*]} concurrently"
pids=()
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086  # the row's overrides are words
  python train.py experiment=learn_gpu data=presimulated "data.path=$OUT/samples" data.num_workers=1 ${ROW[$name]} $EXTRA \
    task_name="table4_$name" "trainer.max_time=$MAX_TIME" "export_dir=$OUT/$name/refiner" "hydra.run.dir=$OUT/$name/run" \
    "callbacks.benchmark_curve.set=[$SIM,$BENCH]" "callbacks.benchmark_curve.at_steps=$AT" \
    "callbacks.benchmark_curve.name=$name" "callbacks.benchmark_curve.out=$OUT/curves/$name.jsonl" \
    > "$OUT/$name.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "row ${NAMES[$i]} failed: tail of $OUT/${NAMES[$i]}.log" >&2; tail -5 "$OUT/${NAMES[$i]}.log" >&2; failed=1; }
done

echo "== the pooling row: every export on $BENCH, plain and pool=8"
refiners=$(for name in "${NAMES[@]}"; do
  if [ -f "$OUT/$name/refiner/config.json" ]; then printf '%s: %s, ' "$name" "$OUT/$name/refiner"; fi
done)
if [ -n "$refiners" ]; then
  python -m evaluation.evaluate "set=$BENCH" pool=8 "out_dir=$OUT/eval" "refiners={${refiners%, }}"
  python -m evaluation.learnability --plot "$OUT"/curves/*.jsonl --png "$OUT/curves.png"
fi
exit $failed
