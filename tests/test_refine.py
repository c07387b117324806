import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, load_photo
from pixperfect import Refiner
from pixperfect.models import CMGANRefiner
from pixperfect.refine import main as refine_main

TINY = dict(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, ffc_global_ratio=0.5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny refiner with a non-zero output layer (so it is not the identity), exported."""
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.05)
    out = tmp_path_factory.mktemp("refiner")
    model.save_pretrained(out)
    return out, model.eval()


@pytest.fixture
def photo_files(tmp_path, cbsd68_photos):
    src = cbsd68_photos[3]
    w, h = Image.open(src).size
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 3 : w // 2] = 200  # > 0.5 after /255: binarised to 1
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    return src, mask_path, (w, h)


def test_save_and_load_pretrained_round_trip(exported):
    path, model = exported
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = CMGANRefiner.from_pretrained(path)
    assert loaded.config["channels"] == TINY["channels"]
    x, m = torch.rand(1, 3, 33, 45), torch.ones(1, 1, 33, 45)
    with torch.no_grad():
        assert torch.equal(loaded(x, m), model(x, m))


def test_refiner_pipeline_accepts_unbatched_inputs(exported):
    path, model = exported
    refiner = Refiner.from_pretrained(path)
    image = torch.rand(3, 20, 30)
    mask = torch.zeros(20, 30)
    mask[5:10, 5:10] = 1
    out = refiner(image, mask)
    with torch.no_grad():
        assert torch.equal(out, model(image[None], mask[None, None]))


def test_refiner_pipeline_errors(exported, tmp_path):
    path, _ = exported
    refiner = Refiner.from_pretrained(path)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        refiner(torch.full((1, 3, 8, 8), 255.0), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        refiner(torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 9))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        Refiner.from_pretrained(tmp_path / "empty")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pixperfect.refine", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_refine_cli_on_a_photo(exported, photo_files, tmp_path):
    path, model = exported
    image_path, mask_path, (w, h) = photo_files
    out = tmp_path / "out" / "refined.png"
    proc = run_cli("--checkpoint", path, "--image", image_path, "--mask", mask_path, "--out", out)
    assert proc.returncode == 0, proc.stderr
    result = np.asarray(Image.open(out))
    assert result.shape == (h, w, 3)
    image = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    mask = torch.from_numpy((np.asarray(Image.open(mask_path)) > 127).astype(np.float32))[None, None]
    with torch.no_grad():
        expected = (model(image, mask)[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    assert np.array_equal(result, expected)


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_refine_cli_accepts_rgba_and_grayscale(exported, photo_files, tmp_path, mode):
    path, _ = exported
    image_path, mask_path, (w, h) = photo_files
    converted = tmp_path / f"in_{mode}.png"
    Image.open(image_path).convert(mode).save(converted)
    out = tmp_path / "refined.jpg"
    assert refine_main(["--checkpoint", str(path), "--image", str(converted), "--mask", str(mask_path),
                        "--out", str(out)]) == 0
    assert Image.open(out).size == (w, h) and Image.open(out).mode == "RGB"


def test_refine_cli_size_mismatch_is_one_line(exported, photo_files, tmp_path):
    path, _ = exported
    image_path, _, _ = photo_files
    small_mask = tmp_path / "small.png"
    Image.new("L", (10, 10), 255).save(small_mask)
    proc = run_cli("--checkpoint", path, "--image", image_path, "--mask", small_mask, "--out", tmp_path / "o.png")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "must match" in proc.stderr and "10×10" in proc.stderr


def test_refine_cli_unreadable_inputs_are_one_line(exported, photo_files, tmp_path):
    path, _ = exported
    image_path, mask_path, _ = photo_files
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    cases = [
        ("--image", garbage, "--mask", mask_path, "cannot read"),
        ("--image", tmp_path / "nope.png", "--mask", mask_path, "no such file"),
        ("--image", image_path, "--mask", garbage, "cannot read"),
    ]
    for a, img, b, msk, expected in cases:
        proc = run_cli("--checkpoint", path, a, img, b, msk, "--out", tmp_path / "o.png")
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert expected in proc.stderr
    proc = run_cli("--checkpoint", tmp_path, "--image", image_path, "--mask", mask_path, "--out", tmp_path / "o.png")
    assert proc.returncode != 0 and "cannot load refiner" in proc.stderr and "Traceback" not in proc.stderr


def test_refiner_changes_only_plausibly_on_a_photo(exported, cbsd68_photos):
    """The residual design: an exported refiner's output stays close to its input."""
    path, _ = exported
    refiner = Refiner.from_pretrained(path)
    image = load_photo(cbsd68_photos[5], 64)[None]
    out = refiner(image, torch.ones(1, 1, 64, 64))
    assert out.shape == image.shape and 0 < (out - image).abs().mean() < 0.2
