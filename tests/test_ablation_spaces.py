import pytest
import torch

from pixperfect.losses import HaarSpace, RefinerLoss, SpaceLoss, VGGFeatureSpace
from pixperfect.losses.haar import haar_analysis, haar_synthesis


def test_haar_round_trip_is_exact_and_orthonormal():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 24)
    ll, det = haar_analysis(x)
    torch.testing.assert_close(haar_synthesis(ll, det), x, atol=1e-6, rtol=0)
    energy = ll.square().sum() + det.square().sum()
    torch.testing.assert_close(energy, x.square().sum(), rtol=1e-5, atol=0)


def test_haar_weights_one_is_identity_any_size():
    x = torch.rand(1, 3, 21, 30)
    torch.testing.assert_close(HaarSpace(weights=[1, 1, 1]).fit(x, x, None)(x), x, atol=1e-6, rtol=0)


def test_haar_space_amplifies_detail_not_flat_colour():
    f = HaarSpace(weights=[4.0, 2.0]).fit(None, None, None)
    flat = torch.full((1, 3, 16, 16), 0.4)
    torch.testing.assert_close(f(flat), flat)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    fine = 0.5 + 0.1 * (checker.float() * 2 - 1).expand(1, 3, 16, 16)
    assert ((f(fine) - 0.5).abs().mean() / (fine - 0.5).abs().mean()).item() == pytest.approx(4.0, rel=1e-4)


def test_haar_space_rejects_bad_weights():
    with pytest.raises(ValueError, match="positive"):
        HaarSpace(weights=[1.0, -2.0])


class RandomVGG(torch.nn.Module):
    def __new__(cls):
        import torchvision

        torch.manual_seed(0)
        return torchvision.models.vgg16().features


def test_vgg_space_l1_is_zero_on_identity_and_differentiable():
    space = VGGFeatureSpace(layers=(3, 8), model=RandomVGG())
    loss = RefinerLoss({"vgg": SpaceLoss(space=space, lpips_weight=0, adv_weight=0)})
    x = torch.rand(1, 3, 32, 32)
    batch = {"x_gt": x, "mask": torch.ones(1, 1, 32, 32)}
    zero, _ = loss.generator_loss(x, batch, loss.fit_maps(x, batch, 0), {}, 0)
    assert zero.item() == 0
    pred = (x + 0.1 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    value, logs = loss.generator_loss(pred, batch, loss.fit_maps(pred, batch, 0), {}, 0)
    value.backward()
    assert value.item() > 0 and pred.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in space.parameters())


def test_vgg_space_missing_weights(tmp_path, monkeypatch):
    from pixperfect.losses import MissingPretrainedWeights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingPretrainedWeights, match="vgg16.*allow_missing_weights"):
        VGGFeatureSpace()
    with pytest.warns(UserWarning, match="DROPPED"):
        space = VGGFeatureSpace(allow_missing_weights=True)
    loss = RefinerLoss({"pixel": SpaceLoss(), "vgg": SpaceLoss(space=space, lpips_weight=0, adv_weight=0)})
    assert list(loss.active(0)) == ["pixel"]
