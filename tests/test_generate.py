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
    assert counts["written"] == 3 and counts["skipped"] == 0  # make_shards already left the corrupt file out
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


# ---------------------------------------------------------------------------------------------- COCO protocol
def test_inflate_grows_a_mask_by_the_euclidean_radius():
    from evaluation.generate import inflate

    dot = torch.zeros(1, 21, 21)
    dot[0, 10, 10] = 1
    yy, xx = torch.meshgrid(torch.arange(21), torch.arange(21), indexing="ij")
    disk = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 9).float()[None]  # every pixel within 3 px
    assert torch.equal(inflate(dot, 3), disk) and int(disk.sum()) == 29  # Gauss circle count for r = 3
    box = torch.zeros(1, 30, 40)
    box[0, 10:20, 15:25] = 1
    grown = inflate(box, 4)[0]
    rows, cols = grown.nonzero().T
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 23, 11, 28)  # each side out by 4
    # corners rounded: from the box corner (10, 15), (−3, −3) is 4.2 px away (out), (−2, −3) 3.6 px (in)
    assert grown[7, 12] == 0 and grown[8, 12] == 1 and grown[10, 11] == 1
    assert torch.equal(inflate(box, 0), box)


def test_object_masks_from_a_folder_inflated(model_dir, photos, tmp_path):
    from evaluation.generate import fit, generate_pilot, inflate

    masks = tmp_path / "masks"
    masks.mkdir()
    obj = np.zeros((40, 48), np.uint8)
    obj[15:20, 20:26] = 255
    for key in ("p0", "p1"):  # p2 has none: skipped and counted, never a drawn mask
        Image.fromarray(obj).save(masks / f"{key}.mask.png")
    cfg = cfg_for(model_dir, tmp_path, folder=photos, masks=masks, mask_inflate=3)
    counts = generate_pilot(cfg)
    assert counts["written"] == 2 and counts["skipped"] == 2  # p2 (no object mask) and the corrupt p3
    samples = read_shards(tmp_path / "out")
    expected = fit(inflate(torch.from_numpy(obj / 255.0).float()[None], 3), 32, "nearest")[0].numpy() > 0.5
    for key in ("p0", "p1"):  # the folder's mask wins over p1's own sidecar
        assert np.array_equal(image(samples[key]["mask.png"], "L") > 127, expected)
    assert expected.sum() > (fit(torch.from_numpy(obj / 255.0).float()[None], 32, "nearest") > 0.5).sum()
    import json

    assert json.loads(samples["p0"]["json"])["mask_inflate"] == 3


def test_a_failed_shard_leaves_no_tmp_file(tmp_path):
    from evaluation.generate import write_eval_set

    def boom(sample):
        raise RuntimeError("the GPU fell over")

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    raw = [{"__key__": "a", "png": buf.getvalue()}]
    with pytest.raises(RuntimeError, match="fell over"):
        write_eval_set(raw, boom, tmp_path / "out", samples_per_shard=1)
    assert list((tmp_path / "out").iterdir()) == []  # neither a .tar nor a .tar.tmp


def cli_env(tmp_path):
    return {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}


def test_cli_refuses_zero_steps_in_one_line(model_dir, photos, tmp_path):
    """Regression (issue 11): num_inference_steps=0 gave a traceback and left a .tar.tmp behind."""
    done = subprocess.run([sys.executable, "-m", "evaluation.generate", "pilot", f"pilot.model={model_dir}",
                           "pilot.device=cpu", f"input.folder={photos}", f"output.dir={tmp_path / 'out'}",
                           f"paths.log_dir={tmp_path / 'logs'}", "pilot.call.num_inference_steps=0"],
                          cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert lines == ["error: pilot.call.num_inference_steps must be an integer ≥ 1; got 0"], done.stderr
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.tar"))


@pytest.mark.parametrize("override,expected", [("pilot.call.num_inference_steps=-3", "num_inference_steps"),
                                               ("pilot.call.momentum=1.5", "momentum"),
                                               ("input.mask_inflate=-2", "mask_inflate")])
def test_impossible_settings_are_refused_before_loading(photos, tmp_path, override, expected):
    from evaluation.generate import generate_pilot

    cfg = compose([f"pilot.model={tmp_path / 'none'}", f"input.folder={photos}", f"output.dir={tmp_path / 'out'}",
                   override], tmp_path / "run", config_name="generate")
    with pytest.raises(ValueError, match=expected):
        generate_pilot(cfg)
    assert not (tmp_path / "out").exists()


def test_ablation_multirun_writes_one_set_per_ablation(model_dir, photos, tmp_path):
    import json

    done = subprocess.run([sys.executable, "-m", "evaluation.generate", "pilot", "-m",
                           "pilot/ablation=none,no_sc_loss,no_sbc", f"pilot.model={model_dir}",
                           "pilot.device=cpu", "pilot.resolution=32", "pilot.call.num_inference_steps=2",
                           "pilot.call.op_interval=1", "pilot.call.num_gradient_steps=1", "input.limit=1",
                           f"input.folder={photos}", f"paths.eval_sets_dir={tmp_path / 'sets'}",
                           f"paths.log_dir={tmp_path / 'logs'}"],
                          cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    sets = {p.name: read_shards(p) for p in (tmp_path / "sets").iterdir()}
    assert sorted(sets) == ["pilot_sd15", "pilot_sd15-no_sbc", "pilot_sd15-no_sc_loss"]
    settings = {name: json.loads(s["p0"]["json"]) for name, s in sets.items()}
    assert settings["pilot_sd15"]["coef"] == 1.0 and settings["pilot_sd15"]["sbc"] is True
    assert settings["pilot_sd15-no_sc_loss"]["coef"] == 0.0 and settings["pilot_sd15-no_sc_loss"]["variant"] == "-no_sc_loss"
    assert settings["pilot_sd15-no_sbc"]["sbc"] is False
    assert sets["pilot_sd15-no_sbc"]["p0"]["gen.png"] != sets["pilot_sd15"]["p0"]["gen.png"]  # SBC acts on every pass


@pytest.mark.parametrize("name", ["no_bg_loss", "no_sc_loss", "no_sbc", "layers_low", "layers_mid", "layers_all"])
def test_ablation_configs_compose_on_every_preset(tmp_path, name):
    import inspect

    from pixperfect.pilot.loop import PilotLoop, check_settings

    for preset in ("sd15", "sdxl", "fast"):
        cfg = compose([f"pilot={preset}", f"pilot/ablation={name}"], tmp_path, config_name="generate")
        assert str(cfg.output.dir).endswith(f"pilot_{preset}-{name}")
        call = dict(cfg.pilot.call)
        assert set(call) <= set(inspect.signature(PilotLoop.__call__).parameters)
        check_settings({k: (list(v) if k == "attention_levels" and v is not None else v) for k, v in call.items()})
