"""The albumentations texture ops (simulation/ops/albu.py): exactly seeded, and equal in
distribution to the hand-written ops of simulation/ops/texture.py on real photos."""

import pytest
import torch

from conftest import load_photo
from simulation.ops import albu, texture


@pytest.fixture(scope="module")
def photos(cbsd68_photos):
    return [load_photo(p, 128) for p in cbsd68_photos[30:34]]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a - b).square().mean()))


def mean_abs_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


def hand_noise(x, sigma, g):
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)


OPS = {  # name, parameter → (albumentations op, hand-written op), both f(image, generator)
    ("jpeg", 30): (lambda x, g: albu.jpeg(x, 30, g), lambda x, g: texture.jpeg(x, 30)),
    ("jpeg", 85): (lambda x, g: albu.jpeg(x, 85, g), lambda x, g: texture.jpeg(x, 85)),
    ("noise", 0.01): (lambda x, g: albu.gauss_noise(x, 0.01, g), lambda x, g: hand_noise(x, 0.01, g)),
    ("noise", 0.04): (lambda x, g: albu.gauss_noise(x, 0.04, g), lambda x, g: hand_noise(x, 0.04, g)),
    ("blur", 0.6): (lambda x, g: albu.gaussian_blur(x, 0.6, g), lambda x, g: texture.gaussian_blur(x, 0.6)),
    ("blur", 1.5): (lambda x, g: albu.gaussian_blur(x, 1.5, g), lambda x, g: texture.gaussian_blur(x, 1.5)),
}


@pytest.mark.parametrize("op", sorted(OPS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_equal_in_distribution_to_the_hand_written_op(op, photos):
    """Over 4 photos: the same PSNR to the input (within 0.3 dB) and the same mean absolute change
    (within 5 %), and a float32 3×H×W result in [0, 1]."""
    ours, hand = OPS[op]
    g_a, g_h = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    out_a = [ours(x, g_a) for x in photos]
    out_h = [hand(x, g_h) for x in photos]
    for x, y in zip(photos, out_a):
        assert y.dtype == torch.float32 and y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    psnr_a = sum(psnr(y, x) for x, y in zip(photos, out_a)) / len(photos)
    psnr_h = sum(psnr(y, x) for x, y in zip(photos, out_h)) / len(photos)
    assert psnr_a == pytest.approx(psnr_h, abs=0.3)
    change_a = sum(mean_abs_change(y, x) for x, y in zip(photos, out_a))
    change_h = sum(mean_abs_change(y, x) for x, y in zip(photos, out_h))
    assert change_a == pytest.approx(change_h, rel=0.05)
    assert change_a > 1e-3  # the op did something


@pytest.mark.parametrize("op", sorted(OPS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_same_seed_same_output_and_one_draw_per_call(op, photos):
    ours, _ = OPS[op]
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a, b = ours(photos[0], g1), ours(photos[0], g2)
    assert torch.equal(a, b)
    ref = torch.Generator().manual_seed(7)
    torch.randint(0, 2**31 - 1, (1,), generator=ref)  # exactly one draw was consumed
    assert torch.equal(g1.get_state(), ref.get_state())


def test_noise_is_seeded_by_the_generator_and_has_the_asked_sigma():
    gray = torch.full((3, 256, 256), 0.5)
    a = albu.gauss_noise(gray, 0.03, torch.Generator().manual_seed(0))
    b = albu.gauss_noise(gray, 0.03, torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)
    d = a - gray
    assert float(d.std()) == pytest.approx(0.03, rel=0.02) and abs(float(d.mean())) < 1e-3
    # per channel and per pixel: the channels are not copies of each other
    assert not torch.equal(d[0], d[1])


def test_rejects_non_image_tensors():
    with pytest.raises(ValueError, match="3×H×W"):
        albu.jpeg(torch.rand(1, 16, 16), 50)
