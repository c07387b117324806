"""Pre-emption and resume: SIGTERM leaves a resumable last.ckpt and exits non-zero; a run stopped in
the middle of an epoch and resumed gives the same per-step losses, bitwise on CPU, as the run that
was never stopped; logs, CSV version and skip counts carry on."""

import csv
import io
import os
import signal
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose
from data.make_shards import make_shards
from pixperfect.training.resume import newest_checkpoint, prune_hpc_checkpoints
from pixperfect.training.run import build, fit_resumable

STEPS_PER_EPOCH = 4  # 7 usable images per epoch, batch 2


class LossRecorder(L.Callback):
    """Per-step (step, G loss, masked L1, skipped total) as exact floats."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        m = trainer.callback_metrics
        self.rows.append((int(pl_module.step_count), float(m["train/g_total"]), float(m["train/masked_l1"]),
                          int(pl_module.skipped_total), tuple(batch["key"])))


class SigtermAt(L.Callback):
    """Sends this process SIGTERM after ``step`` training batches (what Slurm or `kill` does)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if int(pl_module.step_count) == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Train: two shards of 3 tiny PNGs (with a manifest) and one hand-made shard with a broken sample
    and a good one (no manifest); val: one shard of 2."""
    root = tmp_path_factory.mktemp("resume_shards")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        src = root / f"{split}_src"
        src.mkdir()
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
            (src / f"{split}{i:02d}.png").write_bytes(buf.getvalue())
        make_shards(src, root / split, maxcount=3, quiet=True)
    # one corrupt sample inside a shard: skipped and counted while training
    import webdataset as wds

    with wds.TarWriter(str(root / "train" / "shard-000002.tar")) as sink:
        sink.write({"__key__": "broken", "png": b"not a png"})
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
        sink.write({"__key__": "extra", "png": buf.getvalue()})
    return str(root / "train" / "shard-{000000..000002}.tar"), str(root / "val" / "shard-000000.tar")


def overrides(shards) -> list[str]:
    train_urls, val_urls = shards
    return ["data=shards", f"data.train_shards='{train_urls}'", f"data.val_shards='{val_urls}'", "data.batch_size=2",
            "data.val_images=2", "data.val_per_image=1", "data.shuffle_buffer=4", "data.pin_memory=false",
            "data.num_workers=0", "data.resolution=32", "model=cmgan_tiny", "loss.lpips.allow_missing_weights=true",
            "trainer=cpu", "logger=csv", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "evaluate=false",
            "callbacks.simulation_preview=null", "module.image_log_every=0",
            "callbacks.last_checkpoint.every_n_train_steps=1000"]  # only epoch ends and SIGTERM write last.ckpt


def run(cfg, extra_callbacks=()):
    datamodule, module, trainer = build(cfg)
    recorder = LossRecorder()
    trainer.callbacks.extend([recorder, *extra_callbacks])
    fit_resumable(cfg, datamodule, module, trainer)
    return recorder.rows, module, trainer


@pytest.mark.parametrize("stop_at", [6])  # mid-way through the second epoch
def test_sigterm_then_resume_gives_bitwise_identical_losses(shards, tmp_path, stop_at):
    reference_cfg = compose(overrides(shards), tmp_path / "reference")
    reference, ref_module, _ = run(reference_cfg)
    assert len(reference) == 2 * STEPS_PER_EPOCH
    assert reference[-1][3] == 2  # the broken sample, once per epoch
    final = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(final["state_dict"]["step_count"]) == 2 * STEPS_PER_EPOCH  # before: the best epoch's step

    out = tmp_path / "interrupted"
    cfg = compose(overrides(shards), out)
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as stopped:
        run(cfg, [SigtermAt(stop_at)])
    assert stopped.value.code == 128 + signal.SIGTERM  # before: exit 0 and nothing saved
    assert time.perf_counter() - t0 < 120
    last = out / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["step_count"]) == stop_at
    assert len(logged_steps(out)) == stop_at  # the stopped attempt flushed its metrics

    resumed, module, _ = run(compose(overrides(shards), out))  # same run folder: continues last.ckpt
    assert [r[0] for r in resumed] == list(range(stop_at + 1, 2 * STEPS_PER_EPOCH + 1))
    assert resumed == reference[stop_at:]  # same batches, same losses, same skip count, bitwise
    for a, b in zip(ref_module.refiner.parameters(), module.refiner.parameters()):
        assert torch.equal(a, b)

    # the resumed attempt appended to the same CSV version
    versions = sorted(p.name for p in (out / "csv").iterdir())
    assert versions == ["version_0"]
    assert len(logged_steps(out)) == 2 * STEPS_PER_EPOCH


def logged_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "csv" / "version_0" / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/g_total")]


def test_newest_checkpoint_and_hpc_pruning(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    files = [tmp_path / "hpc_ckpt_1.ckpt", tmp_path / "checkpoints" / "last.ckpt", tmp_path / "hpc_ckpt_2.ckpt",
             tmp_path / "hpc_ckpt_10.ckpt"]
    for i, f in enumerate(files):
        f.write_bytes(b"x")
        os.utime(f, ns=(10**9 * (i + 1), 10**9 * (i + 1)))
    assert newest_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_10.ckpt"
    os.utime(files[1], ns=(10**10, 10**10))  # last.ckpt written after the pre-emption checkpoint
    assert newest_checkpoint(tmp_path) == files[1]
    assert prune_hpc_checkpoints(tmp_path) == [tmp_path / "hpc_ckpt_1.ckpt", tmp_path / "hpc_ckpt_2.ckpt"]
    assert sorted(p.name for p in tmp_path.glob("hpc_ckpt_*")) == ["hpc_ckpt_10.ckpt"]
    assert newest_checkpoint(tmp_path / "nothing") is None


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stream_resumes_exactly_after_any_batch(shards, num_workers):
    """Stream level, with DataLoader workers: the places of the consumed batches are all a new
    iterator needs to yield exactly the rest of the epoch (same keys, same simulated pixels)."""
    from data.datamodule import StreamLoader, collate
    from data.stream import SampleProcessor, ShardStream
    from simulation import ColorShift, MaskGenerator, SimulationPipeline

    processor = SampleProcessor(32, SimulationPipeline(MaskGenerator(), color_shift=ColorShift(p=1.0)))

    def batches(stream):
        loader = StreamLoader(stream, batch_size=2, num_workers=num_workers, collate_fn=collate)
        return [(b["key"], b["x_gen"], int(b["n_skipped"]), b["_worker"], (b["_position"], b["_produced"]))
                for b in loader]

    stream = ShardStream(shards[0], processor, shuffle_buffer=4, seed=5)
    stream.set_epoch(3)
    full = batches(stream)
    assert sum(b[2] for b in full) == 1 and len({k for b in full for k in b[0]}) == 7
    for k in (1, len(full) // 2, len(full) - 1):
        places = {}
        for _, _, _, worker, place in full[:k]:
            places[worker] = place
        resumed = ShardStream(shards[0], processor, shuffle_buffer=4, seed=5)
        resumed.resume_from(3, places, next_worker=(full[k - 1][3] + 1) % max(num_workers, 1))
        rest = batches(resumed)
        assert [b[0] for b in rest] == [b[0] for b in full[k:]]
        assert all(torch.equal(a[1], b[1]) for a, b in zip(rest, full[k:]))
        assert sum(b[2] for b in rest) == sum(b[2] for b in full[k:])  # skips counted once, not again


def test_requeued_run_keeps_its_wandb_run_id_and_csv_version(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from pixperfect.training.resume import continue_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    first = WandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    continue_loggers([first], tmp_path)
    again = WandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    continue_loggers([again], tmp_path)
    assert first._wandb_init["id"] and again._wandb_init["id"] == first._wandb_init["id"]
    assert again._wandb_init["resume"] == "allow"  # before: a new run (new id) per restart

    csv_a = CSVLogger(str(tmp_path), name="csv")
    csv_a.log_metrics({"loss": 1.0}, step=0)
    csv_a.finalize("failed")
    csv_b = CSVLogger(str(tmp_path), name="csv")
    continue_loggers([csv_b], tmp_path)
    csv_b.log_metrics({"loss": 0.5, "other": 2.0}, step=1)
    csv_b.finalize("success")
    assert csv_b.version == 0  # before: version_1
    with open(tmp_path / "csv" / "version_0" / "metrics.csv", newline="") as f:
        assert [(r["step"], r["loss"]) for r in csv.DictReader(f)] == [("0", "1.0"), ("1", "0.5")]


def test_last_checkpoint_is_replaced_atomically(tmp_path):
    """A save that dies half-way (killed, disk full) leaves the previous last.ckpt as it was."""
    from types import SimpleNamespace

    from pixperfect.training.callbacks import LatestCheckpoint

    last = tmp_path / "last.ckpt"
    last.write_bytes(b"previous state")

    def dying_save(path, weights_only=False):
        Path(path).write_bytes(b"half a check")
        raise OSError("No space left on device")

    trainer = SimpleNamespace(is_global_zero=True, global_step=7, loggers=[], save_checkpoint=dying_save)
    callback = LatestCheckpoint(dirpath=str(tmp_path))
    with pytest.raises(OSError):
        callback._save_checkpoint(trainer, str(last))
    assert last.read_bytes() == b"previous state"

    trainer.save_checkpoint = lambda path, weights_only=False: Path(path).write_bytes(b"new state")
    callback._save_checkpoint(trainer, str(last))
    assert last.read_bytes() == b"new state" and not list(tmp_path.glob("*.part"))
