"""Hydra sweeps: `main()` returns the monitored metric, and `hparams_search=optuna` runs trials
whose sampled values reach the job configs and whose returned metrics the sweeper optimises."""

import csv
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from data.make_shards import make_shards

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


@pytest.fixture(scope="module")
def shards(cbsd68_photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_shards")
    for split, photos in (("train", cbsd68_photos[10:12]), ("val", cbsd68_photos[12:14])):
        (root / f"{split}_src").mkdir()
        for p in photos:
            (root / f"{split}_src" / p.name).symlink_to(p)
        make_shards(root / f"{split}_src", root / split, maxcount=2, quiet=True)
    return str(root / "train" / "shard-000000.tar"), str(root / "val" / "shard-000000.tar")


@pytest.mark.slow  # two training trials in a subprocess: ~40 s on 2 cores
def test_optuna_sweep_runs_two_trials_and_minimises_the_returned_metric(shards, tmp_path):
    logs = tmp_path / "logs"
    args = [sys.executable, "train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "loss=pixperfect",
            "loss.spaces.disc.warmup_steps=0", "loss.spaces.disc.ramp_steps=0", "data=shards",
            f"data.train_shards={shards[0]}", f"data.val_shards={shards[1]}", "data.batch_size=2", "data.val_images=2",
            "data.val_per_image=1", "data.shuffle_buffer=4", "data.pin_memory=false", "data.num_workers=0",
            "device_simulation=null", "model=cmgan_tiny", "data.resolution=32", "loss.lpips.allow_missing_weights=true",
            "trainer=cpu", "+trainer.max_steps=1", "+trainer.limit_val_batches=1", "evaluate=false", "logger=csv",
            "callbacks.simulation_preview.n=0", f"paths.log_dir={logs}", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (sweep,) = (logs / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    returned = []
    for job in jobs:
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        sampled = dict(o.split("=", 1) for o in overrides)
        space = cfg["loss"]["spaces"]["disc"]["space"]
        assert space["degree"] == int(sampled["loss.spaces.disc.space.degree"]) in (2, 4, 6, 8, 10)
        assert space["beta"] == [float(sampled["loss.spaces.disc.space.beta.0"]),
                                 float(sampled["loss.spaces.disc.space.beta.1"])]
        assert 5 <= space["beta"][0] <= 25 <= space["beta"][1] <= 60
        assert 5e-5 <= cfg["module"]["optimizer_g"]["lr"] <= 2e-3
        (metrics_csv,) = job.rglob("metrics.csv")
        rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get("val/masked_l1")]
        returned.append(float(rows[-1]["val/masked_l1"]))
    assert len(set(map(tuple, [yaml.safe_load((j / ".hydra" / "overrides.yaml").read_text()) for j in jobs]))) == 2
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(returned), rel=1e-6)
