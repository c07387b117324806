import math

import pytest
import torch
from hydra.utils import instantiate

from pixperfect.models import CMGANRefiner, MaskConditionedDiscriminator
from pixperfect.models.blocks import FourierUnit, ModulatedConv2d

TINY = dict(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, ffc_global_ratio=0.5)


def test_refiner_is_identity_at_init():
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY)
    x = torch.rand(2, 3, 40, 56)
    mask = (torch.rand(2, 1, 40, 56) > 0.5).float()
    assert torch.equal(model(x, mask), x)


@pytest.mark.parametrize("hw", [(31, 47), (64, 64), (17, 100), (8, 8)])
def test_refiner_any_size_in_same_size_out(hw):
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.1)  # no longer the identity
    x = torch.rand(1, 3, *hw)
    out = model(x, torch.ones(1, 1, *hw))
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    assert out.min() >= 0 and out.max() <= 1


def test_refiner_output_depends_on_whole_image():
    """FFC bottleneck + global code: a pixel far from the edit still changes the output there."""
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.1)
    x = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :16, :16] = 1
    y1 = model(x, mask)
    x2 = x.clone()
    x2[..., 56:, 56:] = 1 - x2[..., 56:, 56:]  # change the opposite corner only
    y2 = model(x2, mask)
    assert (y1 - y2)[..., :16, :16].abs().max() > 1e-4


def test_cmgan_config_parameter_count(compose_cfg):
    cfg = compose_cfg(["model=cmgan"])
    refiner = instantiate(cfg.model.refiner)
    n = sum(p.numel() for p in refiner.parameters()) / 1e6
    print(f"cmgan refiner: {n:.2f}M parameters")
    assert 35 <= n <= 50
    assert isinstance(refiner, CMGANRefiner)


def test_small_and_tiny_are_small(compose_cfg):
    small = instantiate(compose_cfg(["model=cmgan_small"]).model.refiner)
    tiny = instantiate(compose_cfg(["model=cmgan_tiny"]).model.refiner)
    assert 1e6 < small.num_parameters() < 10e6
    assert tiny.num_parameters() < 1e5


def test_refiner_rejects_bad_inputs():
    model = CMGANRefiner(**TINY)
    with pytest.raises(ValueError, match="N×3×H×W"):
        model(torch.rand(1, 4, 16, 16), torch.ones(1, 1, 16, 16))
    with pytest.raises(ValueError, match="does not match"):
        model(torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 8))
    with pytest.raises(ValueError, match="N×1×H×W"):
        model(torch.rand(1, 3, 16, 16), torch.ones(1, 16, 16))


def test_refiner_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = CMGANRefiner(**TINY)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.1)
    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.25  # away from the clamp
    model(x, (torch.rand(2, 1, 32, 32) > 0.5).float()).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead


def test_modulated_conv_matches_grouped_reference():
    """Our scale→conv→demod formulation equals StyleGAN2's per-sample grouped convolution."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, style_dim=7)
    x, style = torch.randn(3, 6, 9, 9), torch.randn(3, 7)
    s = conv.affine(style)
    w = conv.weight[None] * conv.scale * s[:, None, :, None, None]  # N×O×I×k×k
    w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    ref = torch.nn.functional.conv2d(x.reshape(1, 18, 9, 9), w.reshape(15, 6, 3, 3), padding=1, groups=3)
    ref = ref.reshape(3, 5, 9, 9) + conv.bias[None, :, None, None]
    torch.testing.assert_close(conv(x, style), ref, rtol=1e-4, atol=1e-5)


def test_fourier_unit_is_global_and_shape_preserving():
    torch.manual_seed(0)
    fu = FourierUnit(4)
    x = torch.randn(1, 4, 15, 22)
    y = fu(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[..., 0, 0] += 5.0
    assert (fu(x2) - y)[..., 10:, 15:].abs().max() > 1e-5  # a far-away pixel moved


def test_fourier_unit_under_bf16_autocast():
    fu = FourierUnit(4)
    x = torch.randn(1, 4, 16, 16, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fu(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_discriminator_patch_logits_any_size():
    d = MaskConditionedDiscriminator(channels=[8, 16, 32])
    out = d(torch.rand(2, 3, 64, 48), torch.ones(2, 1, 64, 48))
    assert out.shape == (2, 1, 16, 12)
    out_mask = d(torch.rand(2, 3, 64, 48), torch.zeros(2, 1, 64, 48))
    assert out_mask.shape == out.shape


def test_discriminator_sees_the_mask():
    torch.manual_seed(0)
    d = MaskConditionedDiscriminator(channels=[8, 16, 32])
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(d(x, torch.zeros(1, 1, 32, 32)), d(x, torch.ones(1, 1, 32, 32)))


def test_lrelu_gain_keeps_unit_variance():
    from pixperfect.models.blocks import lrelu

    x = torch.randn(200000)
    second_moment = lrelu(x).square().mean()
    assert math.isclose(float(second_moment), 2 * (1 + 0.04) / 2, rel_tol=0.02)


AFFINE = {**TINY, "output": "affine"}


RESIDUAL_GLOBAL = {**TINY, "output": "residual", "global_transform": True}
RINGS_GLOBAL = {**RESIDUAL_GLOBAL, "global_source": "rings", "boundary_stats": False}


@pytest.mark.parametrize("kw", [AFFINE, {**TINY, "output": "residual"}, RESIDUAL_GLOBAL, RINGS_GLOBAL,
                                {**TINY, "boundary_stats": False}])
def test_refiner_variants_are_identity_at_init_and_train_everywhere(kw):
    torch.manual_seed(0)
    model = CMGANRefiner(**kw)
    x = torch.rand(2, 3, 29, 35) * 0.5 + 0.25
    mask = torch.zeros(2, 1, 29, 35)
    mask[..., 5:20, 8:25] = 1
    assert torch.equal(model(x, mask), x)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.1)
    if model.global_transform:
        torch.nn.init.normal_(model.global_affine.weight, std=0.1)
    model(x, mask).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead


@pytest.mark.parametrize("kw, scale", [(AFFINE, 1.0), (RESIDUAL_GLOBAL, 1.0), (RINGS_GLOBAL, 1.0),
                                       ({**RESIDUAL_GLOBAL, "global_scale": 0.5}, 0.5)])
def test_global_colour_transform_applies_inside_the_mask_only(kw, scale):
    torch.manual_seed(0)
    model = CMGANRefiner(**kw)
    with torch.no_grad():
        model.global_affine.bias.copy_(torch.tensor([0.1, 0, 0, 0, 0.1, 0, 0, 0, 0.1, 0, 0, 0]))  # M_g = 0.1·I
    x = torch.full((1, 3, 16, 16), 0.5)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    out = model(x, mask)
    torch.testing.assert_close(out[..., 4:12, 4:12], torch.full((1, 3, 8, 8), 0.5 + 0.05 * scale))
    assert torch.equal(out[..., :4, :], x[..., :4, :])


def test_global_transform_defaults_to_the_head_and_is_rebuilt_from_the_config(tmp_path):
    assert CMGANRefiner(**AFFINE).global_transform and not CMGANRefiner(**{**TINY, "output": "residual"}).global_transform
    assert not hasattr(CMGANRefiner(**{**AFFINE, "global_transform": False}), "global_affine")
    model = CMGANRefiner(**{**RESIDUAL_GLOBAL, "global_scale": 0.25})
    torch.nn.init.normal_(model.global_affine.weight, std=0.1)
    model.save_pretrained(tmp_path)
    loaded = CMGANRefiner.from_pretrained(tmp_path)
    assert loaded.global_transform and loaded.global_scale == 0.25
    x, mask = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    assert torch.equal(loaded(x, mask), model(x, mask))
    for bad_scale in (0.0, -1.0, float("nan"), float("inf"), "0.5"):
        with pytest.raises(ValueError, match="global_scale"):
            CMGANRefiner(**{**RESIDUAL_GLOBAL, "global_scale": bad_scale})
    with pytest.raises(ValueError, match="global_transform"):
        CMGANRefiner(**{**TINY, "output": "residual", "global_transform": "false"})
    with pytest.raises(ValueError, match="global_source"):
        CMGANRefiner(**{**RESIDUAL_GLOBAL, "global_source": "style"})
    with pytest.raises(ValueError, match="needs the global transform"):
        CMGANRefiner(**{**TINY, "output": "residual", "global_source": "rings"})


@pytest.mark.parametrize("stats", [False, True, "mean"])
def test_ring_driven_global_transform_sees_only_the_boundary_colours(stats):
    """``global_source="rings"``: two images with the same boundary rings get the same transform, however
    different their content elsewhere (the code could tell them apart; the rings cannot)."""
    torch.manual_seed(0)
    model = CMGANRefiner(**{**RINGS_GLOBAL, "boundary_stats": stats})
    torch.nn.init.normal_(model.global_affine.weight, std=0.1)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    x = torch.full((2, 3, 64, 64), 0.5)
    x[1, :, 26:38, 26:38] = torch.rand(3, 12, 12)  # deep inside the mask, away from both rings
    out = model(x, mask)
    delta = out - x
    corner = delta[:, :, 16:24, 16:24]  # a corner of the edit, flat in both images
    torch.testing.assert_close(corner[0], corner[1])
    assert delta[0, :, 20, 20].abs().sum() > 0  # the transform is not zero
    assert torch.equal(out[:, :, :16], x[:, :, :16])  # outside the mask: untouched


@pytest.mark.parametrize("stats", [False, True, "mean"])
def test_ring_driven_global_transform_follows_the_boundary_colours(stats):
    """...and a colour jump at the boundary alone changes it, whatever the code's ring statistics are."""
    torch.manual_seed(0)
    model = CMGANRefiner(**{**RINGS_GLOBAL, "boundary_stats": stats})
    torch.nn.init.normal_(model.global_affine.weight, std=0.1)
    torch.nn.init.normal_(model.global_rings[0].weight, std=1.0)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    x = torch.full((2, 3, 64, 64), 0.5)
    x[1] += 0.2 * mask[1] * torch.tensor([1.0, 0, 0])[:, None, None]  # a red cast: the inner ring differs
    seen = []
    model.global_affine.register_forward_hook(lambda module, args, out: seen.append(out))
    model(x, mask)
    g = seen[0]  # N×12: the transform of each image
    assert (g[0] - g[1]).abs().max() > 1e-3


def test_ring_statistics_see_a_colour_jump_at_the_boundary():
    from pixperfect.models.refiner import RING_FEATURES, ring_statistics

    image = torch.full((1, 3, 64, 64), 0.4)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    image = image + 0.2 * mask * torch.tensor([1.0, 0, 0])[None, :, None, None]
    stats = ring_statistics(image, mask)
    assert stats.shape == (1, RING_FEATURES)
    inside_mean, outside_mean = stats[0, 0:3], stats[0, 6:9]
    torch.testing.assert_close(inside_mean - outside_mean, torch.tensor([0.4, 0.0, 0.0]))  # [-1, 1] units
    full = ring_statistics(image, torch.ones(1, 1, 64, 64))
    assert full[0, -1] == 0 and full.abs().sum() == 0  # no outside ring: features off, flag 0


def test_invalid_output_mode():
    with pytest.raises(ValueError, match="output"):
        CMGANRefiner(**{**TINY, "output": "rgb"})
