"""Training data that survives real folders: optional sidecars, missing/empty/damaged shards,
16-bit PNGs, undecodable source files, bad settings."""

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from conftest import ROOT, compose
from data.datamodule import ShardDataModule, StreamLoader, collate
from data.decode import decode_sample
from data.errors import DataError, data_error_message
from data.make_shards import main as make_shards_main
from data.make_shards import make_shards
from data.stream import SampleProcessor, ShardStream
from pixperfect.training.run import build
from simulation import BoundarySoftening, ColorShift, MaskGenerator, SimulationPipeline


def png_bytes(seed: int, size=(40, 48)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def png16_bytes(arr16: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr16.astype(np.uint16)).save(buf, format="PNG")  # mode I;16
    return buf.getvalue()


def write_shard(path: Path, samples: list[dict]) -> str:
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)
    return str(path)


@pytest.fixture
def processor():
    sim = SimulationPipeline(MaskGenerator(coverage=(0.1, 0.4)), color_shift=ColorShift(p=1.0),
                             boundary=BoundarySoftening(p=1.0))
    return SampleProcessor(32, sim)


# ---------------------------------------------------------------- optional sidecars
def test_partial_captions_and_meta_reach_the_batch(tmp_path, processor):
    samples = [{"__key__": "a", "png": png_bytes(0), "txt": "a cat"},
               {"__key__": "b", "png": png_bytes(1)},
               {"__key__": "c", "png": png_bytes(2), "json": json.dumps({"source": "x"})}]
    shard = write_shard(tmp_path / "s.tar", samples)
    loader = StreamLoader(ShardStream([shard], processor, shuffle_buffer=0), batch_size=3, collate_fn=collate)
    (batch,) = list(loader)
    assert batch["key"] == ["a", "b", "c"]
    assert batch["caption"] == ["a cat", None, None]
    assert batch["meta"] == [None, None, {"source": "x"}]
    assert batch["x_gt"].shape == (3, 3, 32, 32)


def test_collate_takes_keys_from_every_sample():
    a = {"x": torch.zeros(2), "n_skipped": 1}
    b = {"x": torch.ones(2), "caption": "late", "n_skipped": 2}
    batch = collate([a, b])
    assert batch["caption"] == [None, "late"] and int(batch["n_skipped"]) == 3
    assert torch.equal(batch["x"], torch.stack([torch.zeros(2), torch.ones(2)]))


# ---------------------------------------------------------------- missing / empty shards
def test_shards_that_match_nothing_are_an_error_naming_the_pattern(tmp_path, processor):
    pattern = str(tmp_path / "train-{000000..000003}.tar")
    with pytest.raises(DataError, match=r"train-\{000000\.\.000003\}.tar.: 4 of 4 shards do not exist"):
        ShardStream(pattern, processor)
    with pytest.raises(DataError, match="data.train_shards"):
        ShardDataModule(train_shards=pattern, simulation=processor.simulation)
    with pytest.raises(Exception) as built:  # through Hydra's instantiate, as train.py sees it
        build(compose(["data=shards", f"data.train_shards='{pattern}'", "model=cmgan_tiny"], tmp_path / "run"))
    assert data_error_message(built.value).startswith(f"data.train_shards={pattern!r}: 4 of 4 shards do not exist")
    (tmp_path / "zero.tar").write_bytes(b"")
    with pytest.raises(DataError, match="every shard is empty"):
        ShardStream(str(tmp_path / "zero.tar"), processor)


def empty_tar(path: Path) -> str:
    with tarfile.open(path, "w"):
        pass
    return str(path)


def test_an_epoch_without_samples_is_an_error(tmp_path, processor):
    shard = empty_tar(tmp_path / "empty.tar")
    loader = StreamLoader(ShardStream(shard, processor, shuffle_buffer=0), batch_size=2, collate_fn=collate)
    with pytest.raises(DataError, match="yielded no usable sample"):
        list(loader)


def test_resampled_empty_shards_stop_instead_of_spinning(tmp_path, processor):
    shards = [empty_tar(tmp_path / f"e{i}.tar") for i in range(3)]
    stream = ShardStream(shards, processor, resampled=True, epoch_length=100, shuffle_buffer=0)
    loader = StreamLoader(stream, batch_size=2, collate_fn=collate)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="yielded no usable sample"):
        list(loader)
    assert time.perf_counter() - t0 < 10


# ---------------------------------------------------------------- exact skip counting
def test_truncated_tar_counts_every_lost_sample(tmp_path, processor):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"img{i}.png").write_bytes(png_bytes(i))
    (shard,) = make_shards(src, tmp_path / "out", maxcount=10, quiet=True)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # half the tar: about half the images are gone
    out = list(ShardStream([str(shard)], processor, shuffle_buffer=0))
    skipped = sum(o["n_skipped"] for o in out)
    assert 0 < len(out) < 10
    assert len(out) + skipped == 10  # before: 5 images lost, 2 counted


def test_trailing_corrupt_samples_are_counted(tmp_path, processor):
    shard = write_shard(tmp_path / "s.tar", [{"__key__": "good", "png": png_bytes(0)},
                                              {"__key__": "bad1", "png": b"garbage"},
                                              {"__key__": "bad2", "png": png_bytes(1)[:100]}])
    out = list(ShardStream([shard], processor, shuffle_buffer=0))
    assert [o["key"] for o in out] == ["good"] and out[0]["n_skipped"] == 2


# ---------------------------------------------------------------- 16-bit PNGs
def test_16bit_pngs_decode_to_their_values(tmp_path):
    ramp = np.round(np.linspace(0, 65535, 40 * 48)).reshape(40, 48)
    mask16 = np.zeros((40, 48))
    mask16[10:30, 12:36] = 65535
    mask16[0:5, 0:5] = 20000  # 0.31 of full scale: background, not edit
    sample = decode_sample({"__key__": "k", "png": png16_bytes(ramp), "mask.png": png16_bytes(mask16)})
    expected = torch.from_numpy((ramp / 65535.0).astype(np.float32))
    assert torch.allclose(sample["image"][0], expected, atol=1e-6)
    assert sample["image"].mean() == pytest.approx(0.5, abs=0.01)  # before: ~1.0 (clipped to white)
    assert sample["mask"].sum() == 20 * 24 and sample["mask"][0, 2, 2] == 0


# ---------------------------------------------------------------- make_shards
def test_make_shards_skips_and_lists_undecodable_files(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"ok{i}.png").write_bytes(png_bytes(i))
    (src / "zero.png").write_bytes(b"")
    (src / "truncated.png").write_bytes(png_bytes(7)[:120])
    (src / "text.jpg").write_bytes(b"this is not a jpeg")
    assert make_shards_main([str(src), str(tmp_path / "out"), "--maxcount", "3"]) == 0
    err = capsys.readouterr().err
    assert "skipped 3 of 7 files" in err
    keys = [s["__key__"] for s in wds.WebDataset(str(tmp_path / "out" / "shard-{000000..000001}.tar"),
                                                 shardshuffle=False)]
    assert keys == ["ok0", "ok1", "ok2", "ok3"]
    manifest = json.loads((tmp_path / "out" / "shards.json").read_text())
    assert manifest["shards"] == {"shard-000000.tar": 3, "shard-000001.tar": 1}
    assert set(manifest["skipped"]) == {"zero.png", "truncated.png", "text.jpg"}


def test_make_shards_refuses_a_folder_made_with_other_settings(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(60):
        (src / f"img{i:02d}.png").write_bytes(png_bytes(i, size=(8, 8)))
    out = tmp_path / "out"
    make_shards(src, out, maxcount=7, quiet=True)
    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    assert make_shards_main([str(src), str(out), "--maxcount", "10"]) == 2
    err = capsys.readouterr().err
    assert "other settings (maxcount=7" in err and "--overwrite" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == before  # nothing touched
    assert make_shards_main([str(src), str(out), "--maxcount", "10", "--overwrite"]) == 0
    keys = [s["__key__"] for s in wds.WebDataset(str(out / "shard-{000000..000005}.tar"), shardshuffle=False)]
    assert sorted(keys) == [f"img{i:02d}" for i in range(60)]  # before: 18 of 60 duplicated
    assert sorted(p.name for p in out.glob("*.tar")) == [f"shard-{i:06d}.tar" for i in range(6)]


# ---------------------------------------------------------------- one line, exit 2
def test_data_error_message_unwraps_hydra_and_worker_errors():
    from hydra.errors import InstantiationException

    try:
        try:
            raise DataError("data.batch_size must be an integer >= 1; got 'abc'")
        except DataError as inner:
            raise InstantiationException("Error in call to target 'x'") from inner
    except InstantiationException as exc:
        assert data_error_message(exc) == "data.batch_size must be an integer >= 1; got 'abc'"
    worker = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback:\n  File x\n"
                       "data.errors.DataError: no sample")
    assert data_error_message(worker) == "no sample"
    assert data_error_message(RuntimeError("other")) is None


def test_train_cli_bad_batch_size_exits_2_with_one_line(tmp_path):
    """Any DataError (here data.batch_size=abc; also shards that match nothing) → one line, exit 2."""
    (tmp_path / "x.tar").write_bytes(b"x")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    args = [sys.executable, "train.py", "data=shards", "data.batch_size=abc", f"data.train_shards={tmp_path}/x.tar",
            "model=cmgan_tiny", "logger=csv", f"hydra.run.dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"]
    expected = "data.batch_size must be an integer >= 1; got 'abc'"
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and expected in lines[-1]
    assert "Traceback" not in proc.stderr
