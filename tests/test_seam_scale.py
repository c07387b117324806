"""The seam-scale term: the best-fitting scale of the seam offset, and a loss that teaches it."""

import pytest
import torch

from pixperfect.losses import L1Loss, RefinerLoss, SeamScaleLoss, SpaceLoss
from pixperfect.models import CMGANRefiner


def _offset_and_mask(n=2, h=16, w=16):
    mask = torch.zeros(n, 1, h, w)
    mask[..., 4:12, 4:12] = 1
    offset = torch.zeros(n, 3, h, w)
    offset[:, 0] = 0.03 * mask[:, 0]
    offset[:, 1] = -0.02 * mask[:, 0]
    offset[:, 2] = 0.01 * mask[:, 0]
    return offset, mask


def test_target_scale_recovers_a_scaled_offset_and_ignores_orthogonal_texture():
    """x_gt − x_gen = a·offset + a ±t checkerboard (orthogonal to the constant offset over the
    8×8 edit) + anything outside the mask: the per-image least-squares scale is a exactly."""
    offset, mask = _offset_and_mask()
    x_gen = torch.rand(2, 3, 16, 16) * 0.5 + 0.25
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float() * 0.05
    a = torch.tensor([0.7, 1.6]).view(2, 1, 1, 1)
    x_gt = x_gen + a * offset + checker + (1 - mask) * 0.3  # background error must not count
    target = SeamScaleLoss(1.0, eps=0.0).target_scale(offset, x_gen, x_gt, mask)
    assert target.shape == (2, 1, 1, 1)
    assert target.flatten().tolist() == pytest.approx([0.7, 1.6], abs=1e-5)


def test_target_scale_is_zero_without_a_cast_and_clipped_to_its_range():
    offset, mask = _offset_and_mask()
    x_gen = torch.rand(2, 3, 16, 16)
    loss = SeamScaleLoss(1.0, min_scale=-0.5, max_scale=2.0)
    assert loss.target_scale(offset, x_gen, x_gen, mask).abs().max().item() == 0.0  # clean: no correction
    assert loss.target_scale(offset, x_gen, x_gen + 5 * offset, mask).flatten().tolist() == pytest.approx([2.0, 2.0])
    assert loss.target_scale(offset, x_gen, x_gen - 3 * offset, mask).flatten().tolist() == pytest.approx([-0.5, -0.5])


def test_windowed_target_follows_a_cast_that_changes_across_the_edit():
    """The left half of the edit is off by 0.5·offset, the right half by 1.5·offset: a 3×3 window
    reads each half's own scale away from the line between them; the per-image scale is their mean."""
    offset, mask = _offset_and_mask(n=1)
    scale = torch.ones(1, 1, 16, 16)
    scale[..., :8] = 0.5
    scale[..., 8:] = 1.5
    x_gen = torch.full((1, 3, 16, 16), 0.5)
    x_gt = x_gen + scale * offset
    local = SeamScaleLoss(1.0, window=3, eps=0.0).target_scale(offset, x_gen, x_gt, mask)
    assert local.shape == (1, 1, 16, 16)
    assert local[0, 0, 5:11, 4:7].flatten().tolist() == pytest.approx([0.5] * 18, abs=1e-5)
    assert local[0, 0, 5:11, 9:12].flatten().tolist() == pytest.approx([1.5] * 18, abs=1e-5)
    # centred: the column just left of the line between the halves sees 2 of its 3 columns at 0.5
    assert local[0, 0, 8, 7].item() == pytest.approx((2 * 0.5 + 1.5) / 3, abs=1e-5)
    assert local[0, 0, 8, 8].item() == pytest.approx((0.5 + 2 * 1.5) / 3, abs=1e-5)
    per_image = SeamScaleLoss(1.0, eps=0.0).target_scale(offset, x_gen, x_gt, mask)
    assert per_image.item() == pytest.approx(1.0, abs=1e-5)


def test_loss_is_the_l1_or_squared_error_between_the_prior_and_its_best_fit_over_the_edit():
    offset, mask = _offset_and_mask(n=1)
    x_gen = torch.full((1, 3, 16, 16), 0.5)
    x_gt = x_gen + 0.5 * offset  # best scale 0.5
    scale = torch.full((1, 1, 16, 16), 1.0)
    scale[..., :4, :] = 9.0  # outside the edit: costs nothing
    term = SeamScaleLoss(weight=10.0, power=1, eps=0.0)
    loss, logs = term(scale, offset, x_gen, x_gt, mask)
    mean_abs_offset = (0.03 + 0.02 + 0.01) / 3
    assert loss.item() == pytest.approx(10.0 * 0.5 * mean_abs_offset, rel=1e-5)  # |1 − 0.5|·|o| over the edit
    assert logs["seam_scale_loss"].item() == pytest.approx(0.5 * mean_abs_offset, rel=1e-5)
    assert logs["seam_scale"].item() == pytest.approx(1.0)
    assert logs["seam_scale_target"].item() == pytest.approx(0.5, rel=1e-5)
    right, _ = term(torch.full_like(scale, 0.5), offset, x_gen, x_gt, mask)
    assert right.item() == pytest.approx(0.0, abs=1e-6)  # against 0.1 one line up: float32 rounding of 0.5·offset
    squared, _ = SeamScaleLoss(weight=10.0, power=2, eps=0.0)(scale, offset, x_gen, x_gt, mask)
    mean_sq_offset = (0.03**2 + 0.02**2 + 0.01**2) / 3
    assert squared.item() == pytest.approx(10.0 * 0.25 * mean_sq_offset, rel=1e-4)  # ((1 − 0.5)·o)² over the edit


def test_relative_to_refined_fits_what_the_rest_of_the_refiner_left():
    """The input's error is the whole offset (s* = 1 from the input); a head that already removed
    0.3 of it leaves 0.7 for the prior (s* = 0.7 from the refined image), whatever the prior's
    current scale; and without the refined image the option is refused."""
    offset, mask = _offset_and_mask(n=1)
    x_gen = torch.full((1, 3, 16, 16), 0.5)
    x_gt = x_gen + offset
    scale = torch.full((1, 1, 16, 16), 1.4)
    head = 0.3 * offset  # what the affine head already corrected (RefinerParts.delta)
    _, from_input = SeamScaleLoss(1.0, eps=0.0)(scale, offset, x_gen, x_gt, mask, head)
    _, from_refined = SeamScaleLoss(1.0, eps=0.0, relative_to="refined")(scale, offset, x_gen, x_gt, mask, head)
    assert from_input["seam_scale_target"].item() == pytest.approx(1.0, rel=1e-4)
    assert from_refined["seam_scale_target"].item() == pytest.approx(0.7, rel=1e-4)
    with pytest.raises(ValueError, match="needs the head's correction"):
        SeamScaleLoss(1.0, relative_to="refined")(scale, offset, x_gen, x_gt, mask)


@pytest.mark.parametrize("kwargs", [dict(weight=-1.0), dict(window=2.5), dict(window=-3), dict(window=4),
                                    dict(power=3), dict(min_scale=2.0, max_scale=1.0), dict(relative_to="target")])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="SeamScaleLoss"):
        SeamScaleLoss(**kwargs)


def _tiny_prior_refiner():
    torch.manual_seed(0)
    return CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True)


def _cast_sample():
    """A grey-ish photo with a hard colour cast on a square edit: the seam offset reads it."""
    torch.manual_seed(1)
    x_gt = (0.5 + 0.02 * torch.randn(2, 3, 32, 32)).clamp(0, 1)  # texture the cast stands out of
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    cast = torch.tensor([0.08, -0.05, 0.03]).view(1, 3, 1, 1)
    return x_gt, (x_gt + cast * mask).clamp(0, 1), mask


def test_forward_parts_exposes_the_prior_and_the_untrained_image_is_input_plus_offset():
    refiner = _tiny_prior_refiner()
    x_gt, x_gen, mask = _cast_sample()
    parts = refiner.forward_parts(x_gen[..., :30, :29], mask[..., :30, :29])  # an odd size is padded inside
    assert parts.offset.shape == (2, 3, 30, 29) and parts.scale.shape == (2, 1, 30, 29)
    assert torch.equal(parts.scale, torch.ones_like(parts.scale))  # zero-initialised head: scale 1
    # untrained: the image is the input plus the offset (where nothing clips)
    assert torch.allclose(parts.image, (x_gen[..., :30, :29] + parts.offset).clamp(0, 1), atol=1e-6)
    # the offset undoes the cast: the opposite sign in every channel (how much is test_seam_prior's business)
    inside = mask[..., :30, :29].bool()[:, 0]
    means = [parts.offset[:, c][inside].mean().item() for c in range(3)]
    assert means[0] < -0.02 and means[1] > 0.01 and means[2] < -0.002, means
    plain = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16)
    bare = plain.forward_parts(x_gen, mask)
    assert bare.scale is None and bare.offset is None  # no prior: nothing to report but the head
    assert torch.equal(bare.delta, torch.zeros_like(x_gen)) and torch.equal(bare.image, x_gen)
    # the prior added as it is (no gain): offset reported, no scale, image = clamp(x + offset + Δ)
    torch.manual_seed(0)
    no_gain = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True, seam_gain=False,
                           output="residual")
    with torch.no_grad():
        no_gain.to_rgb.bias.copy_(torch.tensor([0.02, -0.04, 0.0]))  # Δ = half the head: 0.01, -0.02, 0
    p = no_gain.forward_parts(x_gen, mask)
    offset = refiner.forward_parts(x_gen, mask).offset  # the prior does not depend on the weights
    assert p.scale is None and torch.allclose(p.offset, offset)
    assert torch.allclose(p.delta, torch.tensor([0.01, -0.02, 0.0]).view(1, 3, 1, 1).expand_as(x_gen), atol=1e-7)
    assert torch.allclose(p.image, (x_gen + offset + p.delta).clamp(0, 1), atol=1e-6)


def test_training_on_the_term_turns_the_prior_down_where_there_was_no_cast():
    """Targets equal to the input (nothing to fix) make the best scale 0: a few steps on the
    seam-gain term alone lower the refiner's scale over the edit from 1 towards 0."""
    refiner = _tiny_prior_refiner()
    _, x_gen, mask = _cast_sample()
    term = SeamScaleLoss(weight=64.0)
    opt = torch.optim.Adam(refiner.parameters(), lr=1e-3)
    scales = []
    for _ in range(30):
        parts = refiner.forward_parts(x_gen, mask)
        loss, logs = term(parts.scale, parts.offset, x_gen, x_gen, mask)
        scales.append(logs["seam_scale"].item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["seam_scale_target"].item() == 0.0
    assert scales[0] == pytest.approx(1.0)
    assert scales[-1] < 0.6


def test_refiner_loss_adds_the_term_once_and_needs_the_parts():
    refiner = _tiny_prior_refiner()
    x_gt, x_gen, mask = _cast_sample()
    batch = {"x_gt": x_gt, "x_gen": x_gen, "mask": mask}
    spaces = {"pixel": SpaceLoss(l1_weight=1.0, lpips_weight=0.0, adv_weight=0.0)}
    plain = RefinerLoss(spaces, l1=L1Loss())
    with_gain = RefinerLoss(spaces, l1=L1Loss(), seam_scale=SeamScaleLoss(weight=3.0))
    assert not plain.wants_prior_parts and with_gain.wants_prior_parts
    assert not RefinerLoss(spaces, seam_scale=SeamScaleLoss(weight=0.0)).wants_prior_parts
    parts = refiner.forward_parts(x_gen, mask)
    base, _ = plain.generator_loss(parts.image, batch, plain.fit_maps(parts.image, batch, 0), {}, 0)
    total, logs = with_gain.generator_loss(parts.image, batch, with_gain.fit_maps(parts.image, batch, 0), {}, 0,
                                           parts=parts)
    alone, _ = SeamScaleLoss(weight=3.0)(parts.scale, parts.offset, x_gen, x_gt, mask)
    assert total.item() == pytest.approx(base.item() + alone.item(), rel=1e-6)
    assert "seam_scale_loss" in logs and logs["seam_scale"].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="seam_prior=true"):
        with_gain.generator_loss(parts.image, batch, with_gain.fit_maps(parts.image, batch, 0), {}, 0)


@pytest.mark.parametrize("output", ["affine", "residual"])
def test_refiner_loss_hands_the_heads_correction_to_a_residual_target(output):
    """With ``relative_to="refined"`` the loss fits s* to x_gt − (x_gen + Δ), Δ the head's own
    correction from ``forward_parts`` before clamping: the image is clamp(x + scale·offset + Δ),
    at an odd size (padded inside) and where the clamp bites, for both heads; and Δ is not what
    the clamped image minus the prior gives."""
    torch.manual_seed(0)
    refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True, output=output)
    with torch.no_grad():  # a head that corrects something, per pixel, with a gain that varies
        torch.nn.init.normal_(refiner.to_rgb.weight, std=0.05)
        torch.nn.init.normal_(refiner.to_rgb.bias, std=0.02)
    x_gt = (0.9 + 0.03 * torch.randn(2, 3, 30, 29)).clamp(0, 1)  # bright: the clamp at 1 bites
    mask = torch.zeros(2, 1, 30, 29)
    mask[..., 7:22, 8:21] = 1
    x_gen = (x_gt + torch.tensor([0.08, -0.05, 0.03]).view(1, 3, 1, 1) * mask).clamp(0, 1)
    batch = {"x_gt": x_gt, "x_gen": x_gen, "mask": mask}
    parts = refiner.forward_parts(x_gen, mask)
    assert parts.delta.shape == x_gen.shape and parts.delta.abs().mean() > 1e-3
    assert parts.scale.std() > 1e-3
    unclamped = x_gen + parts.scale * parts.offset + parts.delta
    assert (unclamped > 1).any()
    torch.testing.assert_close(parts.image, unclamped.clamp(0, 1), atol=1e-6, rtol=0)
    spaces = {"pixel": SpaceLoss(l1_weight=0.0, lpips_weight=0.0, adv_weight=0.0)}
    residual = RefinerLoss(spaces, seam_scale=SeamScaleLoss(weight=1.0, relative_to="refined"))
    _, logs = residual.generator_loss(parts.image, batch, residual.fit_maps(parts.image, batch, 0), {}, 0, parts=parts)
    term = SeamScaleLoss(weight=1.0)
    m = mask.float()
    mean = lambda t: ((m * t).sum() / m.sum()).item()  # noqa: E731
    expected = mean(term.target_scale(parts.offset, x_gen + parts.delta, x_gt, mask))
    from_input = mean(term.target_scale(parts.offset, x_gen, x_gt, mask))
    from_clamped = mean(term.target_scale(parts.offset, (parts.image - parts.scale * parts.offset).detach(), x_gt, mask))
    assert logs["seam_scale_target"].item() == pytest.approx(expected, rel=1e-6)
    assert -0.5 < expected < 2.0  # not at the clip, where every base would read the same
    assert abs(expected - from_input) > 0.05
    assert abs(expected - from_clamped) > 1e-3
