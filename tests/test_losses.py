import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixperfect.losses import (
    L1Loss,
    LPIPSLoss,
    MissingPretrainedWeights,
    NonSaturatingAdversarialLoss,
    RefinerLoss,
    SpaceLoss,
)
from pixperfect.losses.perceptual import backbone_cache_path


def test_l1_hand_computed():
    pred = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[0, :, 0, 0] = 0.8  # 3 of 12 values differ by 0.8
    loss, logs = L1Loss()(pred, target)
    assert loss.item() == pytest.approx(0.8 * 3 / 12)
    assert logs["l1"].item() == pytest.approx(0.2)
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 1
    weighted, _ = L1Loss(mask_weight=3.0)(pred, target, mask)
    assert weighted.item() == pytest.approx(0.8 * 3 * 4 / 12)  # masked errors count (1 + 3)×


def test_l1_keep_weight_counts_only_edit_pixels_the_input_got_right():
    """Pixel (0,0) is edited and already right, (0,1) edited and wrong, (1,*) background:
    keep_weight multiplies only the first one's error."""
    x_gt = torch.full((1, 3, 2, 2), 0.5)
    x_gen = x_gt.clone()
    x_gen[0, :, 0, 1] = 0.7
    x_gen[0, 0, 0, 0] = 0.5 + 0.4 / 255  # within half an 8-bit step: counts as right
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0] = 1
    pred = x_gt + 0.1  # every value off by 0.1
    loss, _ = L1Loss(mask_weight=1.0, keep_weight=5.0)(pred, x_gt, mask, x_gen, x_gt)
    weights = torch.tensor([[1 + 1 + 5, 1 + 1], [1, 1]])
    assert loss.item() == pytest.approx(float(0.1 * weights.sum() * 3 / 12))
    assert L1Loss(keep_weight=5.0)(pred, x_gt, mask)[0].item() == pytest.approx(0.1)  # no x_gen: plain L1
    with pytest.raises(ValueError, match="keep_weight"):
        L1Loss(keep_weight=-1.0)


def test_adversarial_losses_hand_computed():
    adv = NonSaturatingAdversarialLoss()
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    d_loss, logs = adv.discriminator_loss(real, fake)
    expected = (math.log1p(math.exp(-2)) + math.log(2)) / 2 + (math.log1p(math.exp(-1)) + math.log1p(math.e)) / 2
    assert d_loss.item() == pytest.approx(expected, rel=1e-6)
    g_loss, _ = adv.generator_loss(fake)
    assert g_loss.item() == pytest.approx((math.log1p(math.e) + math.log1p(math.exp(-1))) / 2, rel=1e-6)
    assert logs["d_real_logit"].item() == pytest.approx(1.0)


def test_l1_lowpass_term_keeps_a_cast_and_averages_out_texture():
    """Block means: a uniform cast c costs exactly c (times the term's weight); zero-mean texture
    within each block costs 0; partial edge blocks are their own mean; the mask weights are pooled;
    the default (weight 0) is the plain weighted L1; a flat feature space gets no block term."""
    x_gt = torch.rand(2, 3, 16, 16)
    loss, logs = L1Loss(lowpass_weight=3.0, lowpass_size=8)(x_gt + 0.03, x_gt)
    assert logs["l1_lowpass"].item() == pytest.approx(0.03, rel=1e-4)
    assert loss.item() == pytest.approx(0.03 + 3.0 * 0.03, rel=1e-4)
    checker = (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)) % 2 * 2 - 1  # ±1, zero mean on 2×2 blocks
    texture = x_gt + 0.05 * checker.float()
    loss, logs = L1Loss(lowpass_weight=3.0, lowpass_size=2)(texture, x_gt)
    assert logs["l1"].item() == pytest.approx(0.05, rel=1e-4) and logs["l1_lowpass"].item() < 1e-6
    assert loss.item() == pytest.approx(0.05, rel=1e-4)
    # the mask weights, pooled: one 8×8 block of four edited with mask_weight 4 → block weights 5, 1, 1, 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., :8, :8] = 1
    lowpass = L1Loss(mask_weight=4.0, lowpass_weight=1.0, lowpass_size=8)
    assert lowpass(x_gt + 0.03, x_gt, mask)[1]["l1_lowpass"].item() == pytest.approx(0.03 * (5 + 1 + 1 + 1) / 4, rel=1e-4)
    assert lowpass(x_gt + 0.03 * mask, x_gt, mask)[1]["l1_lowpass"].item() == pytest.approx(0.03 * 5 / 4, rel=1e-4)
    # partial edge blocks: 20 = 8 + 8 + 4, so the last column's blocks are 4 px wide
    wide = torch.rand(2, 3, 20, 20)
    last_column = wide.clone()
    last_column[..., 19] += 0.1
    _, logs = L1Loss(lowpass_weight=1.0, lowpass_size=8)(last_column, wide)
    assert logs["l1_lowpass"].item() == pytest.approx(3 * (0.1 / 4) / 9, rel=1e-4)  # 3 of the 3×3 blocks
    # weight 0: the plain weighted L1, computed by hand
    plain, logs = L1Loss(mask_weight=2.0)(texture, x_gt, mask)
    assert torch.allclose(plain, ((texture - x_gt).abs() * (1 + 2 * mask)).mean()) and "l1_lowpass" not in logs
    # a flat space (VGG features, N×D) keeps the per-pixel term only
    flat, logs = L1Loss(lowpass_weight=16.0)(torch.ones(2, 5), torch.zeros(2, 5))
    assert flat.item() == pytest.approx(1.0) and "l1_lowpass" not in logs
    with pytest.raises(ValueError, match="lowpass_size"):
        L1Loss(lowpass_weight=1.0, lowpass_size=0)
    with pytest.raises(ValueError, match="lowpass_weight"):
        L1Loss(lowpass_weight=-1.0)


def test_r1_of_a_linear_discriminator_is_its_weight_norm():
    """D(x) = <w, x> has ∇_x D = w, so R1 = γ/2 · ‖w‖² · r1_every."""
    w = torch.randn(1, 3, 4, 4)
    adv = NonSaturatingAdversarialLoss(r1_gamma=2.0, r1_every=4)
    x = torch.rand(5, 3, 4, 4).requires_grad_(True)
    logits = (x * w).sum(dim=(1, 2, 3))
    loss, logs = adv.r1_penalty(logits, x)
    assert logs["r1"].item() == pytest.approx(w.square().sum().item(), rel=1e-5)
    assert loss.item() == pytest.approx(w.square().sum().item() * 2.0 / 2 * 4, rel=1e-5)
    assert adv.wants_r1(8) and not adv.wants_r1(9)


def test_r1_of_a_patch_discriminator_does_not_grow_with_its_patch_map():
    """The GAN terms average patch logits, so R1 measures the gradient of that average: the same
    per-image score spread over a P-patch map gives the same penalty as one logit (a sum would
    give P² times it, which held D flat at 128²: docs/learning_diagnostics.md, "Why training does not move past the prior")."""
    w = torch.randn(1, 3, 8, 8)
    adv = NonSaturatingAdversarialLoss(r1_gamma=2.0, r1_every=1)
    x = torch.rand(4, 3, 8, 8).requires_grad_(True)
    one = (x * w).sum(dim=(1, 2, 3))
    _, single = adv.r1_penalty(one, x)
    for side in (1, 4, 16):
        patches = one.view(4, 1, 1, 1).expand(4, 1, side, side)
        _, logs = adv.r1_penalty(patches, x)
        assert logs["r1"].item() == pytest.approx(single["r1"].item(), rel=1e-5)
    # per-patch logits on disjoint pixels: the mean's gradient is each patch's divided by P
    per_pixel = (x * w).sum(dim=1, keepdim=True)  # N×1×8×8, 64 patches
    _, logs = adv.r1_penalty(per_pixel, x)
    assert logs["r1"].item() == pytest.approx(w.square().sum().item() / 64**2, rel=1e-5)


def test_d_input_noise_is_seeded():
    adv = NonSaturatingAdversarialLoss(input_noise_std=0.1)
    x = torch.zeros(1, 3, 8, 8)
    a = adv.noisy(x, torch.Generator().manual_seed(3))
    b = adv.noisy(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.std().item() == pytest.approx(0.1, rel=0.3)
    assert torch.equal(NonSaturatingAdversarialLoss(input_noise_std=0).noisy(x), x)


class RandomLPIPS(nn.Module):
    """``lpips.LPIPS`` with a random trunk (no download): the real LPIPS code path, untrained."""

    def __new__(cls):
        import lpips

        return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)


def test_lpips_zero_on_identical_and_positive_otherwise():
    torch.manual_seed(0)
    loss_fn = LPIPSLoss(net="alex", model=RandomLPIPS())
    x = torch.rand(2, 3, 64, 64)
    same, _ = loss_fn(x, x)
    assert same.item() == pytest.approx(0.0, abs=1e-7)
    diff, logs = loss_fn(x, (x + 0.2 * torch.randn_like(x)).clamp(0, 1))
    assert diff.item() > 1e-4 and "lpips" in logs


def test_lpips_missing_weights_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path, url = backbone_cache_path("vgg")
    assert str(path).startswith(str(tmp_path))
    with pytest.raises(MissingPretrainedWeights, match="allow_missing_weights") as err:
        LPIPSLoss(net="vgg")
    assert url in str(err.value) and str(path.parent) in str(err.value)


def test_lpips_missing_weights_allowed_drops_term_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="DROPPED"):
        loss_fn = LPIPSLoss(net="vgg", allow_missing_weights=True)
    assert not loss_fn.available
    value, logs = loss_fn(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    assert value.item() == 0 and logs == {}


def test_lpips_uses_cached_backbone_when_present(tmp_path, monkeypatch):
    """With the backbone file in the cache, the real pretrained LPIPS is built from it."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path, _ = backbone_cache_path("alex")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*")
        loss_fn = LPIPSLoss(net="alex")
    assert loss_fn.available
    first_conv = loss_fn.model.net.slice1[0].weight
    assert torch.equal(first_conv, torch.load(path)["features.0.weight"])


def test_space_schedule_warmup_and_ramp():
    term = SpaceLoss(warmup_steps=10, ramp_steps=5)
    assert [term.schedule(s) for s in (0, 9, 10, 11, 14, 15, 100)] == [0.0, 0.0, 0.2, 0.4, 1.0, 1.0, 1.0]
    assert SpaceLoss().schedule(0) == 1.0


class ConstantD(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, image, mask):
        return self.value.expand(image.shape[0], 1, 2, 2) + 0 * image.mean()


def test_refiner_loss_combines_weighted_terms():
    loss = RefinerLoss({"pixel": SpaceLoss(l1_weight=64, lpips_weight=5, adv_weight=1)}, lpips=None,
                       adversarial=NonSaturatingAdversarialLoss())
    batch = {"x_gt": torch.zeros(1, 3, 4, 4), "mask": torch.ones(1, 1, 4, 4)}
    x_pred = torch.full((1, 3, 4, 4), 0.25)
    maps = loss.fit_maps(x_pred, batch, step=0)
    total, logs = loss.generator_loss(x_pred, batch, maps, {"pixel": ConstantD(0.0)}, step=0)
    assert total.item() == pytest.approx(64 * 0.25 + math.log(2))
    assert logs["pixel/l1"].item() == pytest.approx(0.25)
    d_total, d_logs = loss.discriminator_loss(x_pred, batch, maps, {"pixel": ConstantD(0.0)}, step=0)
    assert d_total.item() == pytest.approx(2 * math.log(2))
    assert loss.discriminator_names == ["pixel"]
    # with the block-mean term: both parts logged apart, the total carries l1_weight × (l1 + w·lowpass)
    lowpass = RefinerLoss({"pixel": SpaceLoss(l1_weight=64, lpips_weight=0, adv_weight=0)}, lpips=None,
                          adversarial=NonSaturatingAdversarialLoss(), l1=L1Loss(lowpass_weight=2.0, lowpass_size=2))
    total, logs = lowpass.generator_loss(x_pred, batch, lowpass.fit_maps(x_pred, batch, step=0), {}, step=0)
    assert logs["pixel/l1"].item() == pytest.approx(0.25) and logs["pixel/l1_lowpass"].item() == pytest.approx(0.25)
    assert total.item() == pytest.approx(64 * (0.25 + 2.0 * 0.25))


def test_refiner_loss_generator_gradient_reaches_prediction_not_discriminator():
    loss = RefinerLoss({"pixel": SpaceLoss()})
    d = ConstantD(0.3)
    batch = {"x_gt": torch.rand(1, 3, 4, 4), "mask": torch.ones(1, 1, 4, 4)}
    x_pred = torch.rand(1, 3, 4, 4, requires_grad=True)
    total, _ = loss.generator_loss(x_pred, batch, loss.fit_maps(x_pred, batch, 0), {"pixel": d}, 0)
    total.backward()
    assert x_pred.grad is not None and x_pred.grad.abs().sum() > 0
    expected = F.softplus(-torch.tensor(0.3))
    assert total.item() == pytest.approx(64 * (x_pred - batch["x_gt"]).abs().mean().item() + expected.item(), rel=1e-5)


def test_refiner_loss_needs_a_space():
    with pytest.raises(ValueError, match="at least one space"):
        RefinerLoss({})
