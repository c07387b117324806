import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, load_photo
from pixperfect import Refiner
from pixperfect.inference.region import composite_edit
from pixperfect.models import CMGANRefiner
from pixperfect.refine import main as refine_main
from helpers import TINY_REFINER as TINY, tiny_refiner


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny refiner with a non-zero output layer (so it is not the identity), exported."""
    model = tiny_refiner()
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
    out = refiner(image, mask, region="full")
    assert out.shape == image.shape  # unbatched in, unbatched out
    with torch.no_grad():
        assert torch.equal(out, model(image[None], mask[None, None])[0])


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
        refined = composite_edit(model(image, mask), image, mask)  # --region edit, the default
    expected = (refined[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
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


def test_refine_cli_size_mismatch_is_one_line(exported, photo_files, tmp_path, capsys):
    path, _ = exported
    image_path, _, _ = photo_files
    small_mask = tmp_path / "small.png"
    Image.new("L", (10, 10), 255).save(small_mask)
    args = ["--checkpoint", str(path), "--image", str(image_path), "--mask", str(small_mask), "--out", str(tmp_path / "o.png")]
    assert refine_main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "must match" in err and "10×10" in err


def test_refine_cli_unreadable_inputs_are_one_line(exported, photo_files, tmp_path, capsys):
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
        assert refine_main(["--checkpoint", str(path), a, str(img), b, str(msk), "--out", str(tmp_path / "o.png")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert expected in err
    # the real process: one line on stderr, exit 2, no traceback
    proc = run_cli("--checkpoint", tmp_path, "--image", image_path, "--mask", mask_path, "--out", tmp_path / "o.png")
    assert proc.returncode == 2 and "cannot load refiner" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_refiner_changes_only_plausibly_on_a_photo(exported, cbsd68_photos):
    """The residual design: an exported refiner's output stays close to its input."""
    path, _ = exported
    refiner = Refiner.from_pretrained(path)
    image = load_photo(cbsd68_photos[5], 64)[None]
    out = refiner(image, torch.ones(1, 1, 64, 64))
    assert out.shape == image.shape and 0 < (out - image).abs().mean() < 0.2


# ----------------------------------------------------------------- input kinds (diffusers users)
def _pil_pair(seed=0, size=(40, 32)):
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[8:20, 10:30] = 255
    return image, Image.fromarray(mask)


def test_refiner_returns_the_kind_it_was_given(exported):
    path, _ = exported
    refiner = Refiner.from_pretrained(path)
    image, mask = _pil_pair()
    x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
    m = torch.from_numpy(np.asarray(mask, np.float32) / 255)[None, None]
    reference = refiner(x, m)
    expected_u8 = (reference[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    out = refiner(image, mask)
    assert isinstance(out, Image.Image) and np.array_equal(np.asarray(out), expected_u8)
    outs = refiner([image, image], mask)  # one mask for a list
    assert isinstance(outs, list) and len(outs) == 2 and all(np.array_equal(np.asarray(o), expected_u8) for o in outs)
    arr = refiner(np.asarray(image), np.asarray(mask))
    assert arr.dtype == np.uint8 and arr.shape == (32, 40, 3) and np.array_equal(arr, expected_u8)
    arr_f = refiner(np.asarray(image, np.float32) / 255, np.asarray(mask, np.float32)[:, :, None] / 255)
    assert arr_f.dtype == np.float32 and np.allclose(arr_f, reference[0].permute(1, 2, 0).numpy(), atol=1e-6)
    batch = refiner(np.stack([np.asarray(image)] * 2), np.asarray(mask.convert("RGB")))  # NHWC, RGB mask
    assert batch.shape == (2, 32, 40, 3) and np.array_equal(batch[1], expected_u8)


@pytest.mark.parametrize("where", ["image", "mask"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_is_a_clear_error(exported, where, value):
    path, _ = exported
    refiner = Refiner.from_pretrained(path)
    image, mask = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    (image if where == "image" else mask)[0, 0, 3, 4] = value
    with pytest.raises(ValueError, match=f"{where} holds NaN or Inf"):
        refiner(image, mask)
    with pytest.raises(ValueError, match=f"{where} holds NaN or Inf"):
        refiner(image.permute(0, 2, 3, 1).numpy(), mask[0, 0].numpy())


def test_16_bit_image_and_mask_read_like_8_bit(exported, tmp_path):
    """16-bit PNGs used to come out almost all white; values k·257/65535 = k/255 must give the same output."""
    import cv2

    path, _ = exported
    image, mask = _pil_pair(1)
    image.save(tmp_path / "img8.png")
    mask.save(tmp_path / "mask8.png")
    rgb16 = np.asarray(image).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "img16.png"), rgb16[:, :, ::-1])
    Image.fromarray(np.asarray(mask).astype(np.uint16) * 257).save(tmp_path / "mask16.png")  # mode I;16
    assert Image.open(tmp_path / "mask16.png").mode.startswith("I")
    common = ["--checkpoint", str(path), "--region", "full"]
    assert refine_main([*common, "--image", str(tmp_path / "img8.png"), "--mask", str(tmp_path / "mask8.png"),
                        "--out", str(tmp_path / "a.png")]) == 0
    assert refine_main([*common, "--image", str(tmp_path / "img16.png"), "--mask", str(tmp_path / "mask16.png"),
                        "--out", str(tmp_path / "b.png")]) == 0
    a, b = np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png"))
    assert np.array_equal(a, b) and abs(a.astype(int) - np.asarray(image)).mean() < 20


# ------------------------------------------------------------------ one-line errors, exit 2
def _one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_out_under_an_existing_file_is_one_line(exported, tmp_path, capsys):
    path, _ = exported
    image, mask = _pil_pair()
    image.save(tmp_path / "i.png")
    mask.save(tmp_path / "m.png")
    (tmp_path / "afile").write_text("x")
    args = ["--checkpoint", str(path), "--image", str(tmp_path / "i.png"), "--mask", str(tmp_path / "m.png")]
    assert refine_main([*args, "--out", str(tmp_path / "afile" / "sub" / "o.png")]) == 2
    assert "is a file, not a folder" in _one_line(capsys)
    assert refine_main([*args, "--out", str(tmp_path / "i.png")]) == 2  # never overwrite an input
    assert "refusing to overwrite" in _one_line(capsys)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "i.png")), np.asarray(image))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu_is_one_line(exported, tmp_path, capsys):
    path, _ = exported
    image, mask = _pil_pair()
    image.save(tmp_path / "i.png")
    mask.save(tmp_path / "m.png")
    args = ["--checkpoint", str(path), "--image", str(tmp_path / "i.png"), "--mask", str(tmp_path / "m.png"),
            "--out", str(tmp_path / "o.png")]
    assert refine_main([*args, "--device", "cuda"]) == 2
    assert "no CUDA GPU" in _one_line(capsys)
    assert refine_main([*args, "--device", "banana"]) == 2
    assert "is not a device" in _one_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_truncated_weights_and_missing_folder(exported, tmp_path, capsys):
    path, _ = exported
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((path / "config.json").read_bytes())
    data = (path / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Refiner.from_pretrained(broken)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        Refiner.from_pretrained(tmp_path / "does" / "not" / "exist")
    image, mask = _pil_pair()
    image.save(tmp_path / "i.png")
    mask.save(tmp_path / "m.png")
    args = ["--image", str(tmp_path / "i.png"), "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o.png")]
    assert refine_main(["--checkpoint", str(broken), *args]) == 2
    assert "truncated" in _one_line(capsys)
    assert refine_main(["--checkpoint", str(tmp_path / "nope"), *args]) == 2
    assert "no such folder" in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "i.png", "m.png"]  # nothing half-written


# ----------------------------------------------------------------------------- folder mode
@pytest.fixture
def folder(tmp_path):
    """5 images of two sizes with masks in another folder, one corrupt image, one image without a mask."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(5):
        image, mask = _pil_pair(i, (40, 32) if i % 2 else (24, 48))
        image.save(images / f"im{i}.png")
        mask.save(masks / f"im{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.new("L", (10, 10)).save(masks / "broken.png")
    _pil_pair(9)[0].save(images / "lonely.png")
    return images, masks


def test_folder_mode_equals_single_file_resumes_and_reports(exported, folder, tmp_path, capsys):
    path, _ = exported
    images, masks = folder
    out = tmp_path / "out"
    inputs_before = {p: p.read_bytes() for p in [*images.iterdir(), *masks.iterdir()]}
    args = ["--checkpoint", str(path), "--images", str(images), "--masks", str(masks), "--out", str(out),
            "--pool", "3", "--batch-size", "2", "--quiet"]
    assert refine_main(args) == 1  # refined what it could, and says some pairs were skipped
    err = capsys.readouterr().err
    assert "broken.png" in err and "lonely.png: no mask" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == [f"im{i}.png" for i in range(5)]
    for i in (0, 3):  # batched by size with per-image seeds = one file at a time
        assert refine_main(["--checkpoint", str(path), "--image", str(images / f"im{i}.png"), "--mask",
                            str(masks / f"im{i}.png"), "--out", str(tmp_path / f"single{i}.png"), "--pool", "3"]) == 0
        a = np.asarray(Image.open(out / f"im{i}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / f"single{i}.png")).astype(int)
        assert np.abs(a - b).max() <= 1  # batch-size-dependent float rounding at most
    # resumable: existing outputs are kept as they are, missing ones are made
    (out / "im1.png").write_bytes(b"sentinel")
    (out / "im2.png").unlink()
    assert refine_main(args) == 1
    assert (out / "im1.png").read_bytes() == b"sentinel" and (out / "im2.png").is_file()
    assert "refined 1, kept 4 existing" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in [*images.iterdir(), *masks.iterdir()]} == inputs_before


def test_folder_mode_glob_sidecars_and_never_overwrites_inputs(exported, tmp_path, capsys):
    path, _ = exported
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        image, mask = _pil_pair(i)
        image.save(src / f"p{i}.png")
        mask.save(src / f"p{i}.mask.png")  # sidecar masks beside the images
    before = (src / "p0.png").read_bytes()
    assert refine_main(["--checkpoint", str(path), "--images", str(src / "*.png"), "--out", str(src), "--quiet"]) == 1
    assert "not overwriting" in capsys.readouterr().err
    assert (src / "p0.png").read_bytes() == before
    assert refine_main(["--checkpoint", str(path), "--images", str(src / "p*.png"), "--out", str(tmp_path / "o"),
                        "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p0.png", "p1.png"]
    assert refine_main(["--checkpoint", str(path), "--images", str(tmp_path / "none*.png"), "--out",
                        str(tmp_path / "o2")]) == 2


def test_originals_keep_the_background_in_single_and_folder_mode(exported, folder, tmp_path, capsys):
    """--original / --originals: every pixel outside the mask is the original's; folder mode equals
    single-file mode; an image without an original is skipped and named; wrong pairings are one line."""
    path, _ = exported
    images, masks = folder
    originals = tmp_path / "originals"
    originals.mkdir()
    for i in (0, 1, 3):  # im2, im4 have no original
        _pil_pair(100 + i, Image.open(images / f"im{i}.png").size)[0].save(originals / f"im{i}.png")
    out = tmp_path / "out"
    assert refine_main(["--checkpoint", str(path), "--images", str(images), "--masks", str(masks), "--originals",
                        str(originals), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "im2.png: no original" in err and "im4.png: no original" in err
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im1.png", "im3.png"]
    for i in (0, 1, 3):
        refined = np.asarray(Image.open(out / f"im{i}.png")).astype(int)
        original = np.asarray(Image.open(originals / f"im{i}.png")).astype(int)
        outside = np.asarray(Image.open(masks / f"im{i}.png").convert("L")) < 128
        assert np.array_equal(refined[outside], original[outside])
        assert refine_main(["--checkpoint", str(path), "--image", str(images / f"im{i}.png"), "--mask",
                            str(masks / f"im{i}.png"), "--original", str(originals / f"im{i}.png"),
                            "--out", str(tmp_path / f"single{i}.png")]) == 0
        single = np.asarray(Image.open(tmp_path / f"single{i}.png")).astype(int)
        assert np.abs(single - refined).max() <= 1
    capsys.readouterr()
    bad = [  # (arguments, what the one line says)
        (["--image", str(images / "im0.png"), "--mask", str(masks / "im0.png"), "--original",
          str(originals / "im1.png"), "--out", str(tmp_path / "x.png")], "original .* but image"),
        (["--image", str(images / "im0.png"), "--mask", str(masks / "im0.png"), "--original",
          str(originals / "im0.png"), "--region", "full", "--out", str(tmp_path / "x.png")], "goes with --region edit"),
        (["--images", str(images), "--original", str(originals / "im0.png"), "--out", str(tmp_path / "o")],
         "--original is for one image"),
        (["--images", str(images), "--originals", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
         "is not a folder"),
    ]
    for args, message in bad:
        assert refine_main(["--checkpoint", str(path), *args]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- speed options
def _speed_inputs():
    torch.manual_seed(4)
    image = torch.rand(2, 3, 48, 64)
    mask = torch.zeros(2, 1, 48, 64)
    mask[:, :, 10:30, 12:44] = 1
    return image, mask


@pytest.mark.parametrize("option, atol", [({"channels_last": True}, 1e-5), ({"autocast": "bf16"}, 0.03),
                                          ({"autocast": "fp16"}, 0.01), ({"compile": "aot_eager"}, 1e-5)])
def test_speed_options_give_the_plain_output(exported, option, atol):
    path, _ = exported
    image, mask = _speed_inputs()
    plain = Refiner.from_pretrained(path)(image, mask, region="full")
    fast = Refiner.from_pretrained(path, **option)
    out = fast(image, mask, region="full")
    assert out.dtype == torch.float32 and out.shape == plain.shape
    torch.testing.assert_close(out, plain, atol=atol, rtol=0)
    assert (out - plain).abs().mean() < atol / 4
    if "compile" not in option:  # (a new batch size would recompile: seconds)
        pooled = fast(image, mask, pool=3, generator=torch.Generator().manual_seed(0))  # pooling goes through it
        assert pooled.shape == image.shape


@pytest.mark.slow
def test_inductor_compile_gives_the_plain_output(exported):
    """torch.compile's default backend (inductor: generates and builds C++ on CPU, minutes)."""
    path, _ = exported
    image, mask = _speed_inputs()
    plain = Refiner.from_pretrained(path)(image, mask, region="full")
    torch.testing.assert_close(Refiner.from_pretrained(path, compile=True)(image, mask, region="full"), plain,
                               atol=1e-5, rtol=0)


def test_bad_autocast_is_refused(exported):
    with pytest.raises(ValueError, match="autocast must be one of"):
        Refiner.from_pretrained(exported[0], autocast="int8")
