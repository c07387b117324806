"""slurm/train.sbatch without a cluster: what it hands to train.py composes for every trainer, and
what Slurm needs before the job starts exists on a fresh clone. (`make test-slurm` runs it for real.)"""

import re
import shlex
import subprocess

import pytest

from conftest import ROOT, compose

SBATCH = ROOT / "slurm" / "train.sbatch"


def sbatch_directives() -> dict[str, str]:
    out = {}
    for line in SBATCH.read_text().splitlines():
        m = re.match(r"#SBATCH\s+--([\w-]+)(?:=(.*))?$", line.strip())
        if m:
            out[m.group(1)] = m.group(2) or ""
    return out


def srun_overrides(env: dict[str, str]) -> list[str]:
    """The Hydra overrides of the script's `srun python train.py …` line, with ``env`` substituted."""
    text = SBATCH.read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("srun python train.py"))
    args = shlex.split(line)[3:]
    args = [a for a in args if a != "$@"]

    def expand(arg: str) -> str:
        return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), arg)

    return [expand(a) for a in args]


@pytest.mark.parametrize("choice", ["experiment=demo", "trainer=cpu", "trainer=gpu", "experiment=pixperfect_flux"])
def test_sbatch_overrides_compose_for_every_trainer(choice, tmp_path):
    overrides = [o for o in srun_overrides({"SLURM_NNODES": "3", "SLURM_NTASKS_PER_NODE": "4", "SLURM_JOB_ID": "77"})
                 if not o.startswith("hydra.")]
    cfg = compose([choice, *overrides], tmp_path / "run")  # before: Key 'num_nodes' is not in struct
    assert cfg.trainer.num_nodes == 3 and cfg.trainer.devices == 4


def test_sbatch_run_folder_is_per_job_and_log_appends():
    run_dir = next(o for o in srun_overrides({"SLURM_JOB_ID": "77"}) if o.startswith("hydra.run.dir="))
    assert run_dir == "hydra.run.dir=logs/slurm/run-77"
    d = sbatch_directives()
    assert d["open-mode"] == "append" and "requeue" in d and d["signal"].startswith("SIGUSR1@")


def test_sbatch_output_folder_exists_on_a_fresh_clone():
    """Slurm opens --output before the script runs: its folder must exist in a clean checkout."""
    output = sbatch_directives()["output"]
    folder = output.rpartition("/")[0]
    if folder:
        tracked = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True).stdout
        assert tracked.strip(), f"--output={output}: {folder}/ is not in a fresh clone"


def test_sbatch_does_not_trap_the_requeue_signal():
    body = "\n".join(ln for ln in SBATCH.read_text().splitlines() if not ln.lstrip().startswith("#"))
    assert "trap" not in body and "USR1" not in body
