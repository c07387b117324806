"""`python -m evaluation.generate pilot`: evaluation triples as webdataset shards."""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, compose
from pixperfect.pilot import PilotPipeline
from tiny_diffusers import tiny_sd_components


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pilot")
    PilotPipeline(**tiny_sd_components(folder / "parts")).save_pretrained(folder / "model")
    return folder / "model"


@pytest.fixture
def photos(tmp_path, cbsd68_photos):
    """Three small photos (one with a mask and a caption sidecar) and one corrupt file."""
    src = tmp_path / "photos"
    src.mkdir()
    for i, path in enumerate(cbsd68_photos[:3]):
        Image.open(path).convert("RGB").resize((48, 40)).save(src / f"p{i}.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[8:30, 10:40] = 255
    Image.fromarray(mask).save(src / "p1.mask.png")
    (src / "p1.txt").write_text("a red house")
    (src / "p3.png").write_bytes(b"not a png at all")
    return src


def cfg_for(model_dir, tmp_path, **inputs):
    overrides = [f"pilot.model={model_dir}", "pilot.device=cpu", "pilot.resolution=32",
                 "pilot.call.num_inference_steps=2", "pilot.call.op_interval=1", "pilot.call.num_gradient_steps=1",
                 f"output.dir={tmp_path / 'out'}", "output.samples_per_shard=2", "prompt=a photo of a dog"]
    overrides += [f"input.{k}={v}" for k, v in inputs.items()]
    return compose(overrides, tmp_path / "run", config_name="generate")


def read_shards(folder):
    import webdataset as wds

    urls = sorted(str(p) for p in folder.glob("*.tar"))
    return {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)}


def image(data, mode="RGB"):
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode))


def test_pilot_eval_set_from_a_folder(model_dir, photos, tmp_path):
    from evaluation.generate import fit, generate_pilot

    counts = generate_pilot(cfg_for(model_dir, tmp_path, folder=photos))
    assert counts == {"written": 3, "kept": 0, "skipped": 1, "shards": 2}
    samples = read_shards(tmp_path / "out")
    assert sorted(samples) == ["p0", "p1", "p2"]
    for key, s in samples.items():
        gen, gt, mask = image(s["gen.png"]), image(s["gt.png"]), image(s["mask.png"], "L")
        assert gen.shape == gt.shape == (32, 32, 3) and mask.shape == (32, 32)
        assert set(np.unique(mask)) <= {0, 255} and (mask == 255).any()
        bg = mask == 0
        assert np.array_equal(gen[bg], gt[bg])  # paste-back: only the hole is generated
        src = torch.from_numpy(np.asarray(Image.open(photos / f"{key}.png"), np.float32) / 255).permute(2, 0, 1)
        expected = (fit(src, 32, "bilinear") * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(gt, expected)
    assert samples["p1"]["txt"].decode() == "a red house" and samples["p0"]["txt"].decode() == "a photo of a dog"
    sidecar = torch.from_numpy(np.asarray(Image.open(photos / "p1.mask.png"), np.float32) / 255)[None]
    assert np.array_equal(image(samples["p1"]["mask.png"], "L") > 127, fit(sidecar, 32, "nearest")[0].numpy() > 0.5)


def test_rerun_keeps_finished_shards_and_regenerates_the_same_bytes(model_dir, photos, tmp_path):
    from evaluation.generate import generate_pilot

    cfg = cfg_for(model_dir, tmp_path, folder=photos)
    generate_pilot(cfg)
    shards = sorted((tmp_path / "out").glob("*.tar"))
    before = [p.read_bytes() for p in shards]
    stamp = shards[0].stat().st_mtime_ns
    shards[1].unlink()
    counts = generate_pilot(cfg)
    assert counts["kept"] == 2 and counts["written"] == 1
    assert shards[0].stat().st_mtime_ns == stamp
    assert [p.read_bytes() for p in shards] == before  # same seed per key → byte-identical shard


def test_shards_input_gives_the_same_set_as_the_folder(model_dir, photos, tmp_path):
    from data.make_shards import make_shards
    from evaluation.generate import generate_pilot

    make_shards(photos, tmp_path / "in", maxcount=10, quiet=True)
    generate_pilot(cfg_for(model_dir, tmp_path / "a", folder=photos))
    counts = generate_pilot(cfg_for(model_dir, tmp_path / "b", shards=tmp_path / "in" / "shard-000000.tar"))
    assert counts["written"] == 3 and counts["skipped"] == 1
    a, b = read_shards(tmp_path / "a" / "out"), read_shards(tmp_path / "b" / "out")
    assert {k: a[k]["gen.png"] for k in a} == {k: b[k]["gen.png"] for k in b}


def test_cli(model_dir, photos, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    common = [sys.executable, "-m", "evaluation.generate"]
    bad = subprocess.run([*common, "nonsense"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
    args = [f"pilot.model={model_dir}", "pilot.device=cpu", "pilot.resolution=32", "pilot.call.num_inference_steps=1",
            f"input.folder={photos}", f"output.dir={tmp_path / 'out'}", f"paths.log_dir={tmp_path / 'logs'}",
            "input.limit=1"]
    done = subprocess.run([*common, "pilot", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(read_shards(tmp_path / "out")) == ["p0"]
    missing = subprocess.run([*common, "pilot", *args[:4], f"input.folder={tmp_path / 'nope'}",
                              f"paths.log_dir={tmp_path / 'logs'}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.parametrize("name,resolution,steps", [("sd15", 512, 200), ("sdxl", 1024, 200), ("fast", 512, 50)])
def test_pilot_group_presets(tmp_path, name, resolution, steps):
    import inspect

    from pixperfect.pilot.loop import PilotLoop

    cfg = compose([f"pilot={name}"], tmp_path, config_name="generate")
    assert (cfg.pilot.name, cfg.pilot.resolution, cfg.pilot.call.num_inference_steps) == (f"pilot_{name}", resolution,
                                                                                           steps)
    assert str(cfg.output.dir).endswith(f"eval_sets/pilot_{name}")
    accepted = set(inspect.signature(PilotLoop.__call__).parameters)
    assert set(cfg.pilot.call) <= accepted  # every call key is a real argument
