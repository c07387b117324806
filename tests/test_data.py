import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from data.datamodule import FixedSimulatedSet, ShardDataModule, collate
from data.decode import CorruptSample, decode_image, decode_sample
from data.demo import VAL_PHOTOS, write_demo_shards
from data.errors import DataError
from data.make_shards import main as make_shards_main
from data.make_shards import make_shards
from data.stream import SampleProcessor, ShardStream
from simulation import BoundarySoftening, ColorShift, MaskGenerator, SimulationPipeline


def png_bytes(seed: int, size=(40, 48), mode="RGB") -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[0], size[1], 3 if mode == "RGB" else 1), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr.squeeze()).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(path: Path, samples: list[dict]) -> str:
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)
    return str(path)


@pytest.fixture
def simulation():
    return SimulationPipeline(MaskGenerator(coverage=(0.1, 0.4), object_p=1.0), color_shift=ColorShift(p=1.0),
                              boundary=BoundarySoftening(p=1.0))


@pytest.fixture
def processor(simulation):
    return SampleProcessor(32, simulation)


def test_decode_handles_modes_and_rejects_garbage():
    rgba = io.BytesIO()
    Image.new("RGBA", (5, 4), (10, 20, 30, 128)).save(rgba, format="PNG")
    assert decode_image(rgba.getvalue()).shape == (3, 4, 5)
    gray = io.BytesIO()
    Image.new("L", (5, 4), 200).save(gray, format="PNG")
    rgb = decode_image(gray.getvalue())
    assert rgb.shape == (3, 4, 5) and torch.allclose(rgb, torch.full_like(rgb, 200 / 255))
    with pytest.raises(CorruptSample, match="undecodable"):
        decode_image(b"not an image at all")
    with pytest.raises(CorruptSample, match="undecodable"):
        decode_image(png_bytes(0)[:200])  # truncated
    with pytest.raises(CorruptSample, match="no image"):
        decode_sample({"__key__": "k", "txt": b"caption only"})


def test_corrupt_samples_are_skipped_and_counted(tmp_path, processor):
    good = [{"__key__": f"good{i}", "png": png_bytes(i)} for i in range(4)]
    bad = [
        {"__key__": "truncated", "png": png_bytes(9)[:150]},
        {"__key__": "noimage", "txt": "a caption without an image"},
        {"__key__": "garbage", "jpg": b"\x00\x01garbage"},
        {"__key__": "tiny", "png": png_bytes(3, size=(4, 4))},
    ]
    shard = write_shard(tmp_path / "a.tar", [good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3], good[3]])
    stream = ShardStream([shard], processor, shuffle_buffer=0)
    out = list(stream)
    assert [o["key"] for o in out] == ["good0", "good1", "good2", "good3"]
    assert sum(o["n_skipped"] for o in out) == 4
    assert [o["n_skipped"] for o in out] == [0, 1, 2, 1]


def test_truncated_tar_does_not_stop_the_stream(tmp_path, processor):
    full = write_shard(tmp_path / "full.tar", [{"__key__": f"f{i}", "png": png_bytes(i)} for i in range(3)])
    broken_src = write_shard(tmp_path / "broken_src.tar", [{"__key__": f"b{i}", "png": png_bytes(10 + i)}
                                                           for i in range(3)])
    data = Path(broken_src).read_bytes()
    broken = tmp_path / "broken.tar"
    broken.write_bytes(data[: len(data) // 2 + 100])  # cut inside the second member
    stream = ShardStream([str(broken), full], processor, shuffle_buffer=0)
    keys = [o["key"] for o in stream]
    assert {"f0", "f1", "f2"} <= set(keys)
    assert "b2" not in keys


def test_no_sample_seen_twice_in_an_epoch_across_two_workers(tmp_path, processor):
    shards = [write_shard(tmp_path / f"s{j}.tar", [{"__key__": f"s{j}_{i}", "png": png_bytes(10 * j + i)}
                                                  for i in range(5)]) for j in range(4)]
    stream = ShardStream(shards, processor, shuffle_buffer=4, seed=1)
    loader = DataLoader(stream, batch_size=3, num_workers=2, collate_fn=collate)
    keys = [k for batch in loader for k in batch["key"]]
    assert len(keys) == 20
    assert sorted(keys) == sorted(f"s{j}_{i}" for j in range(4) for i in range(5))


def test_resampled_workers_draw_distinct_samples(tmp_path, processor):
    """Resampled, every worker reads the whole shard: each worker's v-th visit of a photo must still
    be its own crop and artifacts (a seed without the worker made them copies, 1 distinct in N workers)."""
    shard = write_shard(tmp_path / "one.tar", [{"__key__": f"k{i}", "png": png_bytes(i, size=(64, 80))} for i in range(3)])
    stream = ShardStream([shard], processor, resampled=True, epoch_length=24, shuffle_buffer=0, seed=1)
    loader = DataLoader(stream, batch_size=4, num_workers=2, collate_fn=collate)
    samples = [x for batch in loader for x in batch["x_gen"]]
    assert len(samples) == 24
    distinct = {tuple(x.flatten()[::97].tolist()) for x in samples}
    assert len(distinct) == 24


def test_a_single_reader_keeps_the_seeds_it_always_had(tmp_path, processor):
    """One reader has nobody to duplicate: its samples are seeded by (seed, epoch, key, visit) alone, so
    figures measured with one worker before the per-worker seeds still reproduce."""
    from data.stream import sample_seed

    raws = [{"__key__": f"k{i}", "png": png_bytes(i, size=(64, 80))} for i in range(2)]
    shard = write_shard(tmp_path / "one.tar", raws)
    stream = ShardStream([shard], processor, resampled=True, epoch_length=4, shuffle_buffer=0, seed=3)
    visits: dict = {}
    for out in stream:
        key = out["key"]
        visits[key] = visits.get(key, 0) + 1
        raw = next(r for r in raws if r["__key__"] == key)
        expected = processor(dict(raw), sample_seed(3, 0, key, visits[key]))
        assert torch.equal(out["x_gen"], expected["x_gen"])
    assert sum(visits.values()) == 4


def test_samples_are_deterministic_per_seed(tmp_path, processor):
    raw = {"__key__": "k", "png": png_bytes(1, size=(64, 80))}
    a, b = processor(raw, seed=5), processor(raw, seed=5)
    for k in ("x_gt", "x_gen", "mask"):
        assert torch.equal(a[k], b[k])
    c = processor(raw, seed=6)
    assert not torch.equal(a["x_gen"], c["x_gen"])
    assert a["x_gt"].shape == (3, 32, 32) and a["mask"].shape == (1, 32, 32)


def test_stream_epochs_are_reproducible_and_differ(tmp_path, processor):
    shards = [write_shard(tmp_path / f"s{j}.tar", [{"__key__": f"s{j}_{i}", "png": png_bytes(10 * j + i)}
                                                  for i in range(4)]) for j in range(2)]
    stream = ShardStream(shards, processor, shuffle_buffer=8, seed=3)
    first = [o["key"] for o in stream]
    again = [o["key"] for o in stream]
    stream.set_epoch(1)
    other = [o["key"] for o in stream]
    assert first == again and sorted(first) == sorted(other) and first != other


def test_resampled_stream_has_fixed_epoch_length(tmp_path, processor):
    shard = write_shard(tmp_path / "s.tar", [{"__key__": f"k{i}", "png": png_bytes(i)} for i in range(3)])
    assert len(list(ShardStream([shard], processor, resampled=True, epoch_length=7, shuffle_buffer=0))) == 7
    with pytest.raises(ValueError, match="epoch_length"):
        ShardStream([shard], processor, resampled=True)


def test_shard_masks_are_used_as_edit_masks(tmp_path, simulation):
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 12:36] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    raw = {"__key__": "m", "png": png_bytes(2), "mask.png": buf.getvalue(), "txt": b"a cat"}
    out = SampleProcessor(40, simulation, hflip=False)(raw, seed=0, random_crop=False)
    expected = torch.zeros(1, 40, 40)
    expected[:, 10:30, 8:32] = 1  # centre square crop of the 40×48 image shifts x by 4
    assert torch.equal(out["mask"], expected)
    assert out["caption"] == "a cat"


def test_datamodule_requires_train_shards(simulation):
    with pytest.raises(ValueError, match="data.train_shards is not set"):
        ShardDataModule(train_shards=None, simulation=simulation)


def test_fixed_validation_set_is_identical_across_builds(tmp_path, processor):
    shard = write_shard(tmp_path / "v.tar", [{"__key__": f"v{i}", "png": png_bytes(i)} for i in range(3)]
                        + [{"__key__": "bad", "png": b"xx"}])
    a = FixedSimulatedSet([shard], processor, max_images=10, per_image=2, seed=0)
    b = FixedSimulatedSet([shard], processor, max_images=10, per_image=2, seed=0)
    assert len(a) == 6 and a.skipped == 1
    assert all(torch.equal(x["x_gen"], y["x_gen"]) for x, y in zip(a.samples, b.samples))


def make_tree(root: Path, n: int) -> None:
    for i in range(n):
        sub = root / f"dir{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"img{i:02d}.png").write_bytes(png_bytes(i, size=(8, 8)))
    (root / "dir0" / "img00.txt").write_text("a caption")
    (root / "dir0" / "img00.mask.png").write_bytes(png_bytes(99, size=(8, 8), mode="L"))


def shard_keys(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        return [m.name for m in tf.getmembers()]


def test_make_shards_is_deterministic_and_recursive(tmp_path):
    make_tree(tmp_path / "src", 7)
    a = make_shards(tmp_path / "src", tmp_path / "a", maxcount=3, quiet=True)
    b = make_shards(tmp_path / "src", tmp_path / "b", maxcount=3, quiet=True)
    assert [p.name for p in a] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    members = shard_keys(a[0])
    assert members == ["dir0_img00.mask.png", "dir0_img00.png", "dir0_img00.txt", "dir0_img03.png", "dir0_img06.png"]
    samples = list(wds.WebDataset([str(p) for p in a], shardshuffle=False))
    assert len(samples) == 7


def test_make_shards_resumes(tmp_path):
    make_tree(tmp_path / "src", 7)
    paths = make_shards(tmp_path / "src", tmp_path / "out", maxcount=3, quiet=True)
    reference = [p.read_bytes() for p in paths]
    os.utime(paths[0], (1, 1))
    paths[1].unlink()  # as if the run died while writing shard 1 …
    (tmp_path / "out" / "shard-000001.tar.tmp").write_bytes(b"partial")  # … leaving its temp file
    again = make_shards(tmp_path / "src", tmp_path / "out", maxcount=3, quiet=True)
    assert [p.read_bytes() for p in again] == reference
    assert os.stat(paths[0]).st_mtime == 1  # finished shards were not rewritten
    assert not (tmp_path / "out" / "shard-000001.tar.tmp").exists()


def test_make_shards_skip_leaves_out_exactly_the_photos_make_set_limit_holds_out(tmp_path, capsys):
    """`make_shards --skip N` + `make_set --limit N` on one folder: disjoint, and together every photo."""
    from evaluation.make_set import list_photos

    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"p{(5 - i) * 7 % 6}.png").write_bytes(png_bytes(i, size=(8, 8)))  # written out of order
    held_out = {p.stem for p in list_photos(src)[:2]}
    assert make_shards_main([str(src), str(tmp_path / "out"), "--skip", "2"]) == 0
    (shard,) = sorted((tmp_path / "out").glob("shard-*.tar"))
    trained = {s["__key__"] for s in wds.WebDataset(str(shard), shardshuffle=False)}
    assert held_out == {"p0", "p1"} and trained == {"p2", "p3", "p4", "p5"}
    assert make_shards_main([str(src), str(tmp_path / "out2"), "--skip", "6"]) == 2
    assert "--skip 6 leaves none of the 6 images" in capsys.readouterr().err
    assert make_shards_main([str(src), str(tmp_path / "out3"), "--skip", "-1"]) == 2
    assert "--skip must be >= 0" in capsys.readouterr().err


def test_make_shards_cli_errors(tmp_path, capsys):
    assert make_shards_main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert make_shards_main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2


def test_demo_shards_hold_out_validation_photos(tmp_path):
    train, val = write_demo_shards(tmp_path)
    train_keys = {s["__key__"] for s in wds.WebDataset(train, shardshuffle=False)}
    val_keys = [s["__key__"] for s in wds.WebDataset(val, shardshuffle=False)]
    assert val_keys == list(VAL_PHOTOS) and not train_keys & set(val_keys) and len(train_keys) >= 5
    before = Path(train).stat().st_mtime_ns
    assert write_demo_shards(tmp_path) == (train, val) and Path(train).stat().st_mtime_ns == before


def test_demo_photos_cli_writes_the_pixels_the_shards_hold(tmp_path, capsys):
    """`python -m data.demo OUT --split train`: the training photos as the training shards store them
    (a set made from them measures memory, not generalisation)."""
    import io

    import numpy as np
    import webdataset as wds
    from PIL import Image

    from data.demo import TRAIN_PHOTOS, main

    train, _ = write_demo_shards(tmp_path / "cache")
    stored = {s["__key__"]: np.asarray(Image.open(io.BytesIO(s["png"])).convert("RGB"))
              for s in wds.WebDataset(train, shardshuffle=False)}
    assert main([str(tmp_path / "photos")]) == 0
    written = {p.stem: np.asarray(Image.open(p)) for p in sorted((tmp_path / "photos").glob("*.png"))}
    assert sorted(written) == sorted(TRAIN_PHOTOS) == sorted(stored)
    assert all(np.array_equal(written[k], stored[k]) for k in stored)
    assert f"wrote {len(TRAIN_PHOTOS)} of the {len(TRAIN_PHOTOS)} training photos" in capsys.readouterr().out
    assert main([str(tmp_path / "photos")]) == 0 and "wrote 0 of the" in capsys.readouterr().out  # nothing rewritten
    (tmp_path / "a_file").write_text("x")
    assert main([str(tmp_path / "a_file")]) == 2 and "cannot write the photos" in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "x"  # nothing lost
    with pytest.raises(SystemExit):  # the held-out photos are the closing evaluation's, at full size
        main([str(tmp_path / "v"), "--split", "val"])


def test_decode_cache_gives_the_same_samples_and_decodes_each_photo_once(tmp_path, simulation, monkeypatch):
    """The cache only saves work: a cached stream's samples equal an uncached one's bit for bit, and
    each photo is decoded once however often it is drawn."""
    import data.stream as stream_module

    calls = []
    real = stream_module.decode_sample
    monkeypatch.setattr(stream_module, "decode_sample", lambda raw: calls.append(raw["__key__"]) or real(raw))
    raws = [{"__key__": f"k{i}", "png": png_bytes(i, size=(64, 80))} for i in range(3)]
    raws[0]["mask.png"] = png_bytes(9, size=(64, 80), mode="L")
    shard = write_shard(tmp_path / "s.tar", raws)
    plain, cached = SampleProcessor(32, simulation), SampleProcessor(32, simulation, decode_cache=4)
    streams = [list(ShardStream([shard], p, resampled=True, epoch_length=12, shuffle_buffer=4, seed=1))
               for p in (plain, cached)]
    assert len(calls) == 12 + 3  # the plain stream decodes every draw, the cached one each photo once
    for a, b in zip(*streams, strict=True):
        assert a["key"] == b["key"]
        for k in ("x_gt", "x_gen", "mask", "alpha"):
            assert torch.equal(a[k], b[k]), k


def test_decode_cache_is_bounded_keyed_by_content_and_never_handed_out(simulation):
    proc = SampleProcessor(32, simulation, decode_cache=2)
    a = {"__key__": "same", "__url__": "a.tar", "png": png_bytes(1)}
    b = {"__key__": "same", "__url__": "a.tar", "png": png_bytes(2)}  # equal key, other bytes
    c = {"__key__": "c", "png": png_bytes(3)}
    assert not torch.equal(proc.decode(a)["image"], proc.decode(b)["image"])
    proc.decode(a)  # a used again: b is now the least recently used
    proc.decode(c)
    assert [dict(k)["png"] for k in proc._decoded] == [a["png"], c["png"]]  # b evicted, not the oldest entry
    first = proc.decode(c)
    first["image"].zero_()  # a caller that writes into its sample ...
    first["scale"] = 0.5
    again = proc.decode(c)  # ... leaves the cached photo as decoded
    assert torch.equal(again["image"], decode_sample(c)["image"]) and "scale" not in again
    bad = {"__key__": "bad", "png": b"not a png"}
    for _ in range(2):  # a corrupt sample is refused every time, never cached
        with pytest.raises(CorruptSample):
            proc.decode(bad)
    assert len(proc._decoded) == 2 and all(dict(k)["__key__"] != "bad" for k in proc._decoded)
    odd = {"__key__": "odd", "png": png_bytes(4), "extra": ["unhashable"]}  # decoded without the cache
    assert torch.equal(proc.decode(odd)["image"], decode_sample(odd)["image"]) and len(proc._decoded) == 2
    for value in (-1, 1.5, True):
        with pytest.raises(ValueError, match="decode_cache"):
            SampleProcessor(32, simulation, decode_cache=value)
    with pytest.raises(DataError, match="decode_cache"):  # train.py turns a DataError into one line, exit 2
        ShardDataModule("unused.tar", simulation, decode_cache=-1)
