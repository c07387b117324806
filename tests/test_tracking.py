"""W&B tracking, checked on what an offline run writes: image pixels, tables, the model artifact,
the LR names, and one run per multirun job with its own config, tags, group, name and overrides."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, split_shards
from pixperfect.training.image_log import to_uint8_hwc

pytest.importorskip("wandb")

TINY = ["model=cmgan_tiny", "data.resolution=32", "data.num_workers=0", "loss.lpips.allow_missing_weights=true"]


@pytest.fixture(scope="module")
def shards(cbsd68_photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking_shards")
    split_shards(root, {"train": cbsd68_photos[:4], "val": cbsd68_photos[4:6]}, maxcount=2)
    return str(root / "train" / "shard-{000000..000001}.tar"), str(root / "val" / "shard-000000.tar")


def shard_overrides(shards, quote: str = "'") -> list[str]:
    train, val = shards
    return ["data=shards", f"data.train_shards={quote}{train}{quote}", f"data.val_shards={quote}{val}{quote}",
            "data.batch_size=2", "data.val_images=2", "data.val_per_image=1", "data.shuffle_buffer=4",
            "data.pin_memory=false", "data.resampled=false", "trainer=cpu", "device_simulation=null"]


# ------------------------------------------------------------------ reading an offline run
def wandb_records(run_dir: Path):
    """Records of an offline run's ``run-<id>.wandb`` (LevelDB log framing: 32 KiB blocks of
    crc32/len16/type8 + payload; a 7-byte ``:W&B`` file header), parsed as protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, block = 7, b"", 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (kind == 0 and length == 0):
            pos += left
            continue
        chunk = data[pos + 7: pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL/FIRST start a record, MIDDLE/LAST extend it
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def run_summary(run_dir: Path) -> dict:
    """name, id, tags, group, config (key → JSON value), history keys, artifacts, exit code of one offline run."""
    out = {"config": {}, "history": set(), "artifacts": [], "exit": None}
    for r in wandb_records(run_dir):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(id=r.run.run_id, name=r.run.display_name, tags=list(r.run.tags), group=r.run.run_group)
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            out["history"] |= {i.key or "/".join(i.nested_key) for i in r.history.item}
        elif kind == "artifact":
            out["artifacts"].append((r.artifact.name, r.artifact.type, sorted(m.path for m in r.artifact.manifest.contents)))
        elif kind == "exit":
            out["exit"] = r.exit.exit_code
    return out


def offline_runs(root: Path) -> list[Path]:
    return sorted(root.rglob("offline-run-*"), key=lambda p: p.name)


# ------------------------------------------------------------------ tests
def test_uint8_conversion_matches_torchvision_png(tmp_path):
    from torchvision.utils import save_image

    grid = torch.rand(3, 7, 9)
    grid[:, 0, 0] = torch.tensor([0.0, 1.0, 0.5])
    save_image(grid, tmp_path / "ref.png")
    expected = np.asarray(Image.open(tmp_path / "ref.png").convert("RGB"))
    got = to_uint8_hwc(grid)
    assert got.dtype == np.uint8 and got.shape == (7, 9, 3)
    np.testing.assert_array_equal(got, expected)


def test_wandb_run_images_table_artifact_and_lr_names(compose_cfg, shards, tmp_path, monkeypatch):
    """An offline run: every logged grid decodes from W&B's PNG to the tensor that was logged
    (the float → black bug), the validation table holds the returned metrics, the exported refiner
    is a model artifact, the learning rates are lr-G / lr-D, and the run is finished."""
    import pixperfect.training.callbacks as callbacks_mod
    import pixperfect.training.module as module_mod
    from pixperfect.training.run import train

    logged: dict[str, list[torch.Tensor]] = {}
    for mod in (module_mod, callbacks_mod):
        original = mod.log_grid

        def recording(trainer, key, grid, step, caption="", _original=original):
            logged.setdefault(key, []).append(grid.clone())
            _original(trainer, key, grid, step, caption)

        monkeypatch.setattr(mod, "log_grid", recording)
    cfg = compose_cfg([*shard_overrides(shards), *TINY, "logger=wandb", "+trainer.max_steps=2",
                       "+trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "module.image_log_every=1",
                       "callbacks.simulation_preview.n=2", "evaluate=true", f"export_dir={tmp_path / 'export'}"])
    metrics = train(cfg)
    import wandb

    assert wandb.run is None  # finished at the end of the job

    (run_dir,) = offline_runs(Path(cfg.paths.output_dir))
    media = run_dir / "files" / "media"
    assert set(logged) == {"simulation/preview", "train/samples", "val/samples"}
    for key, grids in logged.items():
        group, name = key.split("/")
        pngs = sorted((media / "images" / group).glob(f"{name}_*.png"))
        decoded = sorted((np.asarray(Image.open(p).convert("RGB")) for p in pngs), key=lambda a: a.tobytes())
        expected = sorted((to_uint8_hwc(g) for g in grids), key=lambda a: a.tobytes())
        assert len(decoded) == len(expected), key
        for got, want in zip(decoded, expected):
            np.testing.assert_array_equal(got, want)
            assert got.mean() > 40  # photos, not black

    (table_file,) = (media / "table" / "results").glob("validation_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][0] == "output" and {"masked_l1", "psnr"} <= set(table["columns"])
    rows = {row[0]: dict(zip(table["columns"][1:], row[1:])) for row in table["data"]}
    assert list(rows) == ["input", "paste-back", "refiner"]
    for label, key in (("input", "input"), ("paste-back", "paste_back"), ("refiner", "refiner")):
        assert rows[label]["masked_l1"] == pytest.approx(metrics[f"val/{key}/masked_l1"], rel=1e-6)

    run = run_summary(run_dir)
    assert run["exit"] == 0
    (model,) = [a for a in run["artifacts"] if a[1] == "model"]
    assert model[0] == f"refiner-{run['id']}" and {"config.json", "model.safetensors"} <= set(model[2])
    assert {"lr-G", "lr-D"} <= run["history"] and not any(k.startswith("lr-Adam") for k in run["history"])
    assert run["config"]["module"]["optimizer_g"]["lr"] == 5e-4  # the resolved config
    assert run["config"]["overrides"] == []  # composed without a Hydra job


def test_log_results_table_for_any_rows(tmp_path):
    """The function the evaluation table uses: rows → wandb.Table, missing cells empty."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from pixperfect.training.tracking import finish_loggers, log_results_table

    loggers = [CSVLogger(tmp_path / "csv"), WandbLogger(project="pixperfect", save_dir=str(tmp_path), name="t")]
    rows = {"input": {"psnr": 30.5, "lpips": 0.2}, "refiner": {"psnr": 33.25, "fid": 12.0}}
    log_results_table(loggers, "eval/table", rows)
    finish_loggers(loggers)
    (table_file,) = (tmp_path / "wandb").rglob("files/media/table/eval/table_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["output", "psnr", "lpips", "fid"]
    assert table["data"] == [["input", 30.5, 0.2, None], ["refiner", 33.25, None, 12.0]]


@pytest.mark.slow  # two training subprocesses: ~45 s on 2 cores
def test_multirun_jobs_get_their_own_wandb_runs(shards, tmp_path):
    """Two Table-4 rows in one Hydra multirun: two finished offline runs, each with its own
    config, tags, name and the job's command-line overrides, in one multiruns/<ts>/ tree."""
    logs = tmp_path / "logs"
    args = [sys.executable, "train.py", "-m", "experiment=ablation/refiner_pixel_only,ablation/enhance_d2",
            *shard_overrides(shards, quote=""), *TINY, "+trainer.max_steps=1", "+trainer.limit_val_batches=1",
            "evaluate=false", "callbacks.simulation_preview.n=2", f"paths.root_dir={tmp_path}", f"paths.log_dir={logs}",
            f"paths.cache_dir={tmp_path / 'cache'}"]
    args = [f'{a.split("=", 1)[0]}="{a.split("=", 1)[1]}"' if "{" in a else a for a in args]  # Hydra-quote braces
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (sweep,) = (logs / "train" / "multiruns").iterdir()
    assert (sweep / "multirun.yaml").is_file()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_ablation_refiner_pixel_only",
                                                                      "1_ablation_enhance_d2"]
    runs = [run_summary(r) for r in offline_runs(sweep)]
    assert len(runs) == 2 and runs[0]["id"] != runs[1]["id"]
    by_name = {r["name"]: r for r in runs}
    assert set(by_name) == {"ablation_refiner_pixel_only-0", "ablation_enhance_d2-1"}
    a, b = by_name["ablation_refiner_pixel_only-0"], by_name["ablation_enhance_d2-1"]
    assert a["tags"] == ["ablation", "table4", "refiner_pixel_only"] and b["tags"] == ["ablation", "table4", "enhance_d2"]
    assert a["group"] == b["group"] == "table4"
    assert set(a["config"]["loss"]["spaces"]) == {"pixel"} and b["config"]["loss"]["spaces"]["disc"]["space"]["degree"] == 2
    assert "experiment=ablation/refiner_pixel_only" in a["config"]["overrides"]
    assert "experiment=ablation/enhance_d2" in b["config"]["overrides"]
    assert a["exit"] == 0 and b["exit"] == 0
    for row in ("refiner_pixel_only", "enhance_d2"):  # where README's "Table 4 in one call" reads them
        assert (tmp_path / "outputs" / "ablation" / row / "model.safetensors").is_file()
