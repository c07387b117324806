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


@pytest.fixture(scope="module")
def random_vgg():
    """timm's features_only VGG-16 at relu1_2 … relu4_3, random weights (built once: ~140M parameters)."""
    from pixperfect.losses.vgg_space import vgg16_features

    torch.manual_seed(0)
    return vgg16_features((3, 8, 15, 22), pretrained=False)


def test_vgg_space_l1_is_zero_on_identity_and_differentiable(random_vgg):
    space = VGGFeatureSpace(model=random_vgg)
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


def test_timm_vgg_space_equals_torchvision_vgg_features(random_vgg):
    """The timm features_only layers are torchvision's VGG-16 ``features[3, 8, 15, 22]`` (the
    layers the paper's ablation names): same weights → the same activations."""
    import torchvision

    tv = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    weights = {k.removeprefix("features_"): v for k, v in random_vgg.state_dict().items()}  # features_0.weight
    tv.load_state_dict(weights, strict=False)
    loaded = set(weights)
    assert {k for k in tv.state_dict() if int(k.split(".")[0]) <= 22} == loaded
    x = torch.rand(2, 3, 48, 40)
    got = VGGFeatureSpace(model=random_vgg).fit(None, None, None)(x)
    h = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    ref = []
    with torch.no_grad():
        for i, layer in enumerate(tv[:23]):
            h = layer(h)
            if i in (3, 8, 15, 22):
                ref.append(h.flatten(1) / h[0].numel() ** 0.5)
    torch.testing.assert_close(got, torch.cat(ref, 1), rtol=1e-5, atol=1e-6)


def test_timm_weights_are_found_in_the_hf_cache(tmp_path, monkeypatch):
    """Weights in the standard Hugging Face hub cache layout (where timm downloads them) are found
    offline; with neither that nor torchvision's file, nothing is."""
    import huggingface_hub.constants

    from pixperfect.models.timm_backbone import cached_weights

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert cached_weights("vgg16") is None
    repo = tmp_path / "hub" / "models--timm--vgg16.tv_in1k"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert cached_weights("vgg16") == repo / "snapshots" / "abc123" / "model.safetensors"


def test_vgg_space_rejects_layers_timm_does_not_expose():
    with pytest.raises(ValueError, match="among"):
        VGGFeatureSpace(layers=(3, 5), pretrained=False)


def test_vgg_space_missing_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from pixperfect.losses import MissingPretrainedWeights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingPretrainedWeights, match="vgg16.*allow_missing_weights"):
        VGGFeatureSpace()
    with pytest.warns(UserWarning, match="DROPPED"):
        space = VGGFeatureSpace(allow_missing_weights=True)
    loss = RefinerLoss({"pixel": SpaceLoss(), "vgg": SpaceLoss(space=space, lpips_weight=0, adv_weight=0)})
    assert list(loss.active(0)) == ["pixel"]


# ------------------------------------------------------------------ projected discriminator (timm)
def test_projected_discriminator_with_random_backbone():
    """Mask-conditioned patch logits from every head; the backbone and projections stay frozen
    while gradients reach the image (generator loss, R1) and the heads (D step)."""
    from pixperfect.models import ProjectedDiscriminator

    torch.manual_seed(0)
    d = ProjectedDiscriminator(pretrained=False, channels=(16, 32)).train()
    assert not d.backbone.training
    frozen = [p for n, p in d.named_parameters() if n.startswith(("backbone.", "projections."))]
    assert frozen and not any(p.requires_grad for p in frozen)
    image = torch.rand(2, 3, 64, 64, requires_grad=True)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:40, 8:30] = 1
    logits = d(image, mask)
    # 4 heads on features at 1/4, 1/8, 1/16, 1/32, each halved once more by its one DownBlock
    expected = sum((64 // r // 2) ** 2 for r in (4, 8, 16, 32))
    assert logits.shape == (2, 1, 1, expected)
    assert not torch.allclose(d(image, 1 - mask), logits)  # the mask conditions the verdict
    before = [p.clone() for p in frozen]
    logits.sum().backward()
    assert image.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.heads.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, frozen))


def test_projected_discriminator_config_option(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg(["model=cmgan_projected", "model.discriminator.pretrained=false"])
    assert cfg.model.refiner.channels == [64, 128, 256, 512, 512]  # the paper's refiner kept
    d = instantiate(cfg.model.discriminator)
    assert type(d).__name__ == "ProjectedDiscriminator" and list(d.heads[0][0].weight.shape[:2]) == [64, 65]


def test_projected_discriminator_missing_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from pixperfect.losses import MissingPretrainedWeights
    from pixperfect.models import ProjectedDiscriminator

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingPretrainedWeights, match="projected discriminator.*tf_efficientnet_lite0"):
        ProjectedDiscriminator()
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        d = ProjectedDiscriminator(allow_missing_weights=True)
    assert not any(p.requires_grad for p in d.backbone.parameters())


# ------------------------------------------------------------------ Table-4 rows offline: TAEF2 on CPU
def test_device_simulation_runs_bfloat16_config_on_cpu_in_float32():
    """The rows inherit dtype=bfloat16 (pixperfect_flux); on CPU the already-CPU autoencoder used to
    get bf16 input with float weights ("Input type (BFloat16) and bias type (float)")."""
    from pathlib import Path

    from simulation.device import DeviceSimulation

    taef2 = Path(__file__).resolve().parents[2] / "shared" / "weights" / "taef2"
    if not taef2.is_dir():
        pytest.skip(f"TAEF2 weights not found at {taef2}")
    sim = DeviceSimulation(str(taef2), dtype="bfloat16")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 40)
    mask = torch.zeros(2, 1, 24, 40)
    mask[..., 4:20, 8:30] = 1
    out = sim({"x_gen": x, "mask": mask, "vae": torch.tensor([1, 0])})
    assert out["x_gen"].dtype == torch.float32 and next(sim.model.parameters()).dtype == torch.float32
    assert sim.applied == 1
    torch.testing.assert_close(out["x_gen"][1], x[1])  # unflagged sample untouched
    assert torch.equal(out["x_gen"][0][:, mask[0, 0] == 0], x[0][:, mask[0, 0] == 0])  # outside the mask too
    assert (out["x_gen"][0] - x[0]).abs().max() > 0.01  # a real round trip inside
    sim.model.to(torch.bfloat16)  # already on the device but in another dtype: cast back
    sim({"x_gen": x, "mask": mask, "vae": torch.tensor([1, 1])})
    assert next(sim.model.parameters()).dtype == torch.float32
