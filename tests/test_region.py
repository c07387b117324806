"""region="edit" keeps the background bit for bit; region="full" is the network's output everywhere."""

import pytest
import torch
import torch.nn.functional as F

from pixperfect import Refiner
from pixperfect.inference.region import composite_edit, default_band_px, edit_alpha
from pixperfect.models import CMGANRefiner

TINY = dict(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, ffc_global_ratio=0.5)


@pytest.fixture(scope="module")
def refiner():
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.05)  # not the identity: it changes every pixel
    return Refiner(model)


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
