"""region="edit" keeps the background bit for bit; region="full" is the network's output everywhere."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_photo
from PIL import Image

from pixperfect import Refiner
from pixperfect.inference.region import composite_edit, default_band_px, edit_alpha
from pixperfect.models import CMGANRefiner
from helpers import TINY_REFINER as TINY, tiny_refiner


@pytest.fixture(scope="module")
def refiner():
    return Refiner(tiny_refiner())


@pytest.fixture
def inputs():
    torch.manual_seed(2)
    image = torch.rand(2, 3, 64, 80)
    mask = torch.zeros(2, 1, 64, 80)
    mask[0, :, 20:34, 30:50] = 1
    mask[1, :, 40:60, 5:25] = 0.7  # soft values count as edited (> 0.5)
    return image, mask


def reach(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Pixels within ``px`` (Chebyshev distance) of the binarised mask, computed independently."""
    m = (mask > 0.5).float()
    return F.max_pool2d(m, 2 * px + 1, stride=1, padding=px) > 0


def test_band_scales_with_image_size():
    assert default_band_px(64, 64) == 4 and default_band_px(512, 768) == 16 and default_band_px(1024, 2048) == 32


def test_every_pixel_outside_dilated_feathered_mask_is_the_input(refiner, inputs):
    image, mask = inputs
    out = refiner(image, mask, region="edit")
    full = refiner(image, mask, region="full")
    band = default_band_px(64, 80)  # 4 px dilation + 4 px feather
    outside = ~reach(mask, 2 * band).expand_as(image)
    assert torch.equal(out[outside], image[outside])
    assert (full[outside] != image[outside]).float().mean() > 0.5  # the network does change them
    inside = (mask > 0.5).expand_as(image)
    assert torch.equal(out[inside], full[inside])  # the edit itself is the refined output


def test_feather_is_monotone_and_spans_the_band():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:40, 20:40] = 1
    alpha = edit_alpha(mask, band_px=6, feather_px=6)[0, 0]
    row = alpha[30, 39:]  # walking right from the last mask pixel (distance 0, 1, 2, …)
    assert torch.all(row[:-1] >= row[1:])
    assert row[0] == 1.0 and 0 < row[6] < 1 and row[12] > 0 and row[13] == 0.0  # 0 beyond band + feather
    assert torch.all((alpha > 0) == reach(mask, 12)[0, 0])


def test_all_zero_mask_returns_the_input_bit_identically(refiner):
    torch.manual_seed(3)
    image = torch.rand(1, 3, 40, 56)
    out = refiner(image, torch.zeros(1, 1, 40, 56))
    assert torch.equal(out, image)


def test_pooling_with_both_regions(refiner, inputs):
    image, mask = inputs
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    full, index = refiner(image, mask, pool=3, generator=g(), region="full", return_index=True)
    edit, index_edit = refiner(image, mask, pool=3, generator=g(), region="edit", return_index=True)
    assert torch.equal(index, index_edit)
    assert torch.equal(edit, composite_edit(full, image, mask))
    outside = ~reach(mask, 8).expand_as(image)
    assert torch.equal(edit[outside], image[outside])


def test_unknown_region_is_refused(refiner, inputs):
    with pytest.raises(ValueError, match="region must be one of"):
        refiner(*inputs, region="background")


# ------------------------------------------------------------ original= (the unedited image is known)
def test_with_the_original_only_the_edit_changes(refiner, inputs):
    """Outside the (binarised) mask the output is the original bit for bit; inside it is what the
    refiner makes of the edit pasted into the original; the original under the mask does not matter."""
    image, mask = inputs
    torch.manual_seed(4)
    original = torch.rand_like(image)
    out = refiner(image, mask, original=original)
    m = (mask > 0.5).expand_as(image)
    assert torch.equal(out[~m], original[~m])
    pasted = torch.where(m, image, original)
    assert torch.equal(out[m], refiner(pasted, mask)[m])
    assert not torch.equal(out[m], refiner(image, mask)[m])  # the background it sees differs
    scrambled = torch.where(m, torch.rand_like(original), original)  # other pixels under the mask
    assert torch.equal(refiner(image, mask, original=scrambled), out)


def test_with_a_pil_original_the_kind_is_the_images(refiner):
    """A PIL edit with a numpy original returns PIL, with the original's pixels outside the mask."""
    rng = np.random.default_rng(0)
    edit = Image.fromarray((rng.random((32, 40, 3)) * 255).astype(np.uint8))
    original = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    mask = np.zeros((32, 40), np.uint8)
    mask[8:20, 10:30] = 255
    out = refiner(edit, Image.fromarray(mask), original=original)
    assert isinstance(out, Image.Image)
    assert np.array_equal(np.asarray(out)[mask == 0], original[mask == 0])


def test_with_the_original_bad_input_is_refused(refiner, inputs):
    image, mask = inputs
    with pytest.raises(ValueError, match="goes with region='edit'"):
        refiner(image, mask, original=image, region="full")
    with pytest.raises(ValueError, match="original is .* but image is"):
        refiner(image, mask, original=image[:, :, :32])
    with pytest.raises(ValueError, match=r"original must hold finite values in \[0, 1\]"):
        refiner(image, mask, original=image * 2)


def test_the_original_lets_the_prior_read_a_feathered_cast(cbsd68_photos):
    """A feathered paste spreads its cast over both sides of the mask's edge, which the jump reads
    as shading; with the original's background pasted back, the cast is a step on the edge. The
    untrained seam-prior refiner (the prior alone) then removes a fifth of it (measured 0.81 of the
    input's error with the default CG fill, 0.77 with push-pull), and next to nothing without
    (0.99; push-pull 0.97)."""
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY, seam_prior=True, seam_gain=False)
    prior = Refiner(model)
    photos = torch.stack([load_photo(p, 128) for p in cbsd68_photos[:4]])
    mask = torch.zeros(4, 1, 128, 128)
    mask[..., 32:96, 40:100] = 1
    alpha = torch.from_numpy(cv2.GaussianBlur(mask[0, 0].numpy(), (0, 0), 3.0))[None, None]
    cast = torch.tensor([0.06, -0.03, 0.04]).view(1, 3, 1, 1)
    edited = (photos + alpha * cast).clamp(0, 1)  # the cast fades over ±2σ across the edge

    def masked_l1(x):
        return float(((x - photos).abs() * mask).sum() / (mask.sum() * 3))

    without = masked_l1(prior(edited, mask))
    with_original = masked_l1(prior(edited, mask, original=photos))
    assert without > 0.95 * masked_l1(edited)  # the feathered cast is hardly read
    assert with_original < 0.85 * masked_l1(edited)
