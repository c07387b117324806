import pytest
import torch

from pixperfect.losses import L1Loss, NonSaturatingAdversarialLoss, RefinerLoss, SpaceLoss
from pixperfect.losses.discriminative import DiscriminativeSpace
from pixperfect.losses.tone_map import PolynomialToneMap, _features, least_squares, monomial_exponents, sample_pixels


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_exact_recovery_of_a_known_polynomial_map():
    torch.manual_seed(0)
    src = torch.rand(2, 3, 32, 32)
    # per channel, a known degree-4 polynomial in raw powers (inside the Legendre span)
    coeffs = torch.tensor([[0.1, 0.8, -0.5, 0.3, 0.2], [0.0, 1.2, 0.4, -0.6, 0.1], [-0.2, 0.5, 0.9, 0.0, -0.3]])
    def poly(x):
        return torch.stack([sum(coeffs[c, p] * x[:, c] ** p for p in range(5)) for c in range(3)], dim=1)
    f = PolynomialToneMap.fit(src, poly(src), degree=6, max_pixels=2048, generator=g())
    test = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(f(test), poly(test), atol=1e-5, rtol=1e-5)


def test_cross_channel_recovers_mixed_terms():
    torch.manual_seed(0)
    src = torch.rand(1, 3, 24, 24)
    tgt = torch.stack([src[:, 0] * src[:, 1], src[:, 1] + 0.5 * src[:, 2] ** 2, src[:, 0] * src[:, 2]], dim=1)
    f = PolynomialToneMap.fit(src, tgt, degree=3, cross_channel=True, max_pixels=1024, generator=g())
    torch.testing.assert_close(f(src), tgt, atol=1e-5, rtol=1e-5)
    assert len(monomial_exponents(6, True)) == 84 and len(monomial_exponents(6, False)) == 19


def test_identity_when_prediction_equals_ground_truth():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    mask = (torch.rand(3, 1, 32, 32) > 0.7).float()
    space = DiscriminativeSpace()
    f = space.fit(x, x, mask, generator=g())
    torch.testing.assert_close(f(x), x, atol=1e-5, rtol=1e-5)
    loss = RefinerLoss({"disc": SpaceLoss(space=space, adv_weight=0.0)}, lpips=None)
    total, logs = loss.generator_loss(x, {"x_gt": x, "mask": mask}, {"disc": f}, {}, step=0)
    assert total.item() == 0.0 and logs["disc/l1"].item() == 0.0


def separated_scene():
    """Background colours in [0.05, 0.45], edit colours in [0.5, 0.85]; a 10% gain error in the edit."""
    torch.manual_seed(1)
    h = w = 48
    mask = torch.zeros(1, 1, h, w)
    mask[..., 12:36, 12:36] = 1
    x_gt = 0.05 + 0.4 * torch.rand(1, 3, h, w)
    x_gt = torch.where(mask > 0, 0.5 + 0.35 * torch.rand(1, 3, h, w), x_gt)
    x_pred = torch.where(mask > 0, x_gt * 1.1, x_gt)
    return x_gt, x_pred, mask


def test_discriminative_space_amplifies_a_colour_error():
    x_gt, x_pred, mask = separated_scene()
    f = DiscriminativeSpace(beta=(30, 30)).fit(x_pred, x_gt, mask, generator=g())
    inside = mask.expand_as(x_gt) > 0
    pixel_err = (x_pred - x_gt).abs()[inside].mean()
    disc_err = (f(x_pred) - f(x_gt)).abs()[inside].mean()
    assert disc_err > 2.5 * pixel_err
    outside = ~inside
    assert (f(x_pred) - f(x_gt)).abs()[outside].max() == 0  # identical inputs map identically


def test_degree_10_stays_finite_from_float32():
    x_gt, x_pred, mask = separated_scene()
    for cross in (False, True):
        f = DiscriminativeSpace(degree=10, cross_channel=cross).fit(x_pred.float(), x_gt.float(), mask, generator=g())
        assert torch.isfinite(f.tone_map.coefficients).all()
        assert torch.isfinite(f(x_pred)).all() and f(x_pred).dtype == torch.float32


@pytest.mark.parametrize("detach", [True, False])
def test_gradient_reaches_the_prediction(detach):
    x_gt, x_pred, mask = separated_scene()
    x_pred = x_pred.clone().requires_grad_(True)
    space = DiscriminativeSpace(detach_coefficients=detach)
    loss = RefinerLoss({"disc": SpaceLoss(space=space, adv_weight=0.0)}, lpips=None)
    batch = {"x_gt": x_gt, "mask": mask}
    maps = loss.fit_maps(x_pred, batch, step=0, generator=g())
    assert not maps["disc"].tone_map.coefficients.requires_grad
    total, _ = loss.generator_loss(x_pred, batch, maps, {}, step=0)
    total.backward()
    assert x_pred.grad is not None and x_pred.grad.abs().sum() > 0
    # the gradient concentrates where the error is
    inside = mask.expand_as(x_gt) > 0
    assert x_pred.grad.abs()[inside].mean() > x_pred.grad.abs()[~inside].mean()


def test_pixel_sampling_is_balanced_and_seeded():
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, :8, :8] = 1  # small edit
    mask[1, :, :, :] = 1  # all edited
    idx = sample_pixels(mask, 2, 64, 64, max_pixels=200, dilate_px=0, generator=g(3), device="cpu")
    assert idx.shape == (2, 200)
    flat = mask.flatten(1)
    assert flat[0].gather(0, idx[0]).sum() == 64  # all 64 inside pixels are used; the rest come from outside
    idx2 = sample_pixels(mask, 2, 64, 64, max_pixels=200, dilate_px=0, generator=g(3), device="cpu")
    assert torch.equal(idx, idx2)
    assert idx[0, :100].unique().numel() == 100 and idx[0, 100:].unique().numel() == 100


def test_to_valid_range_is_shared_and_bounded():
    x_gt, x_pred, mask = separated_scene()
    f = DiscriminativeSpace().fit(x_pred, x_gt, mask, generator=g())
    a, b = f.to_valid_range(f(x_pred)), f.to_valid_range(f(x_gt))
    assert a.min() >= 0 and a.max() <= 1 and b.min() >= 0 and b.max() <= 1
    assert (a - b).abs().max() > 0.05


def test_discriminative_term_trains_with_its_own_discriminator():
    x_gt, x_pred, mask = separated_scene()
    from pixperfect.models import MaskConditionedDiscriminator

    loss = RefinerLoss({"pixel": SpaceLoss(lpips_weight=0), "disc": SpaceLoss(space=DiscriminativeSpace(),
                        lpips_weight=0, discriminator="disc", warmup_steps=2, ramp_steps=2)},
                       adversarial=NonSaturatingAdversarialLoss(), l1=L1Loss())
    ds = {"pixel": MaskConditionedDiscriminator(channels=[4, 8]), "disc": MaskConditionedDiscriminator(channels=[4, 8])}
    assert loss.discriminator_names == ["disc", "pixel"]
    batch = {"x_gt": x_gt, "mask": mask}
    for step, expected in ((0, {"pixel"}), (3, {"pixel", "disc"})):
        maps = loss.fit_maps(x_pred, batch, step, generator=g())
        _, logs = loss.generator_loss(x_pred, batch, maps, ds, step)
        assert {k.split("/")[0] for k in logs if "/" in k} == expected
    _, d_logs = loss.discriminator_loss(x_pred, batch, maps, ds, 3)
    assert "disc/d_loss" in d_logs and "pixel/d_loss" in d_logs


def test_differentiable_refit_matches_the_pseudoinverse_fit():
    x_gt, x_pred, mask = separated_scene()
    space = DiscriminativeSpace(detach_coefficients=False, degree=6)
    fitted = space.fit(x_pred, x_gt, mask, generator=g())
    refit = space.refit_with_grad(fitted, x_pred.clone().requires_grad_(True), x_gt, mask)
    assert refit.tone_map.coefficients.requires_grad
    torch.testing.assert_close(refit(x_pred).detach(), fitted(x_pred), atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("degree,cross", [(6, False), (6, True), (10, True)])
def test_least_squares_equals_the_pseudoinverse_solution(degree, cross):
    """The QR route gives pinv(a)·y, also where the features are collinear: a flat image (its
    colours in a 1-D set) and a constant one (rank 1), where the rank truncation decides."""
    torch.manual_seed(0)
    photo_like = torch.rand(1, 4096, 3, dtype=torch.float64)
    flat = (0.5 + 0.01 * torch.randn(1, 4096, 1, dtype=torch.float64)).expand(1, 4096, 3)
    constant = torch.full((1, 4096, 3), 0.3, dtype=torch.float64)
    src = torch.cat([photo_like, flat, constant])
    a = _features(src, monomial_exponents(degree, cross), degree)
    y = src + 30 * 0.02 * torch.randn(src.shape, dtype=torch.float64)
    reference = torch.linalg.pinv(a, rtol=1e-10) @ y
    ours = least_squares(a, y, 1e-10)
    # the same fitted values, to far below float32's resolution (the map is applied in float32)
    torch.testing.assert_close(a @ ours, a @ reference, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(ours[0], reference[0], atol=1e-9, rtol=1e-9)  # well posed: the same coefficients
    torch.testing.assert_close(ours[2], reference[2], atol=1e-12, rtol=1e-9)  # rank 1: the same minimum-norm solution
    assert float(torch.linalg.matrix_rank(a[2], rtol=1e-10)) == 1  # the constant image is rank 1
