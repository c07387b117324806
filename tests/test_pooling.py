import pytest
import torch

from pixperfect import Refiner
from pixperfect.inference.pooling import boundary_region, colour_variants, discrepancy, pooled_refine
from pixperfect.refine import main as refine_main
from helpers import tiny_refiner


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def refiner():
    return Refiner(tiny_refiner())


@pytest.fixture
def inputs():
    torch.manual_seed(1)
    image = torch.rand(2, 3, 32, 40)
    mask = torch.zeros(2, 1, 32, 40)
    mask[0, :, 8:20, 10:30] = 1
    mask[1, :, 16:30, 2:12] = 1
    return image, mask


def test_variants_touch_only_the_mask_and_keep_the_input_first(inputs):
    image, mask = inputs
    v = colour_variants(image, mask, 4, g())
    assert v.shape == (8, 3, 32, 40)
    assert torch.equal(v[0], image[0]) and torch.equal(v[4], image[1])
    outside = (mask.repeat_interleave(4, 0) == 0).expand_as(v)
    assert torch.equal(v[outside], image.repeat_interleave(4, 0)[outside])
    assert (v[1] - image[0]).abs().sum() > 0


def test_pool_1_equals_plain_refinement(refiner, inputs):
    image, mask = inputs
    assert torch.equal(refiner(image, mask, pool=1), refiner(image, mask))
    out, index = refiner(image, mask, pool=1, return_index=True)
    assert torch.equal(out, refiner(image, mask)) and index.tolist() == [0, 0]


def test_chosen_index_is_the_argmin_and_output_matches_it(refiner, inputs):
    image, mask = inputs
    out, index, scores = pooled_refine(refiner.model, image, mask, 6, g(3))
    assert torch.equal(index, scores.argmin(dim=1))
    variants = colour_variants(image, mask, 6, g(3))
    for b in range(2):
        k = b * 6 + int(index[b])
        single = refiner.model(variants[k : k + 1], mask[b : b + 1])
        torch.testing.assert_close(out[b : b + 1], single, atol=1e-5, rtol=1e-5)


def test_batched_equals_sequential(refiner, inputs):
    image, mask = inputs
    out, index, scores = pooled_refine(refiner.model, image, mask, 5, g(7))
    variants = colour_variants(image, mask, 5, g(7))
    masks = mask.repeat_interleave(5, 0)
    seq_out = torch.cat([refiner.model(variants[i : i + 1], masks[i : i + 1]) for i in range(10)])
    seq_scores = discrepancy(variants, seq_out, boundary_region(masks, 8)).view(2, 5)
    torch.testing.assert_close(scores, seq_scores, atol=1e-6, rtol=1e-5)
    assert torch.equal(index, seq_scores.argmin(dim=1))


def test_same_seed_same_output(refiner, inputs):
    image, mask = inputs
    a = refiner(image, mask, pool=8, generator=g(11))
    b = refiner(image, mask, pool=8, generator=g(11))
    assert torch.equal(a, b)


def test_pooling_picks_the_variant_a_colour_correcting_refiner_changes_least():
    """A refiner that pulls the edit's mean colour onto the background's: the variant whose edit
    already matches the background is the one it changes least, and pooling must pick it."""
    class MeanMatch(torch.nn.Module):
        def forward(self, x, m):
            bg = (x * (1 - m)).sum(dim=(2, 3), keepdim=True) / (1 - m).sum(dim=(2, 3), keepdim=True)
            fg = (x * m).sum(dim=(2, 3), keepdim=True) / m.sum(dim=(2, 3), keepdim=True)
            return x + m * (bg - fg)

    image = torch.full((1, 3, 16, 16), 0.5)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    image = image + mask * 0.2  # a colour cast in the edit
    out, index, scores = pooled_refine(MeanMatch(), image, mask, 16, g(0), metric="mean_color", band_px=0)
    variants = colour_variants(image, mask, 16, g(0))
    cast = [((v - 0.5) * mask).abs().sum().item() for v in variants]
    assert int(index) == min(range(16), key=lambda i: cast[i])


def test_bad_pooling_arguments(refiner, inputs):
    image, mask = inputs
    with pytest.raises(ValueError, match="pool must be"):
        refiner(image, mask, pool=0)
    with pytest.raises(ValueError, match="metric"):
        refiner(image, mask, pool=2, metric="ssim")


def test_cli_pool_flag(tmp_path, refiner):
    import numpy as np
    from PIL import Image

    refiner.model.save_pretrained(tmp_path / "ckpt")
    Image.fromarray((np.random.default_rng(0).random((24, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((24, 30), np.uint8)
    mask[5:15, 5:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    args = ["--checkpoint", str(tmp_path / "ckpt"), "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "m.png")]
    assert refine_main([*args, "--out", str(tmp_path / "a.png"), "--pool", "4", "--seed", "1"]) == 0
    assert refine_main([*args, "--out", str(tmp_path / "b.png"), "--pool", "4", "--seed", "1"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    assert refine_main([*args, "--out", str(tmp_path / "c.png"), "--pool", "0"]) == 2
