"""The defining property of each artifact family, on real CBSD68 photos."""

import numpy as np
import pytest
import torch

from conftest import ROOT, load_photo
from simulation import (
    BoundarySoftening,
    ColorShift,
    ContentBand,
    DeviceSimulation,
    MaskGenerator,
    SimulationPipeline,
    TextureMismatch,
)
from simulation.autoencoders import roundtrip_any_size
from simulation.ops.content_band import boundary_band

TAEF2 = ROOT.parent / "shared" / "weights" / "taef2"


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def photos(cbsd68_photos):
    return [load_photo(p, 128) for p in cbsd68_photos[:6]]


def box_mask(size=128, lo=32, hi=96):
    m = torch.zeros(1, size, size)
    m[:, lo:hi, lo:hi] = 1
    return m


def only(**families):
    return SimulationPipeline(MaskGenerator(object_p=1.0), **families)


def test_color_shift_changes_masked_mean_and_keeps_alpha0_exact(photos):
    pipe = only(color_shift=ColorShift(p=1.0, alpha_kinds=["constant"]))
    for i, photo in enumerate(photos):
        out = pipe(photo, g(i), mask=box_mask())
        inside = out["alpha"].expand_as(photo) > 0
        assert torch.equal(out["x_gen"][~inside], photo[~inside])
        mean_shift = (out["x_gen"] - photo)[inside].view(3, -1).mean(dim=1).abs().max()
        assert mean_shift > 0.005


def test_jpeg_changes_only_the_background(photos):
    tex = TextureMismatch(p=1.0, smooth_p=0, jpeg_p=1.0, jpeg_quality=(20, 20), noise_p=0, vae_p=0)
    pipe = only(texture=tex)
    for i, photo in enumerate(photos[:3]):
        out = pipe(photo, g(i), mask=box_mask())
        inside = out["mask"].expand_as(photo) > 0
        assert torch.equal(out["x_gen"][inside], photo[inside])  # the edit is not compressed
        assert (out["x_gen"][~inside] - photo[~inside]).abs().mean() > 1e-3  # the photo is
        assert torch.equal(out["x_gen"][~inside], out["x_gt"][~inside])  # and the target is the photo's look
        assert out["applied"] == ["texture.jpeg"]


def test_noise_differs_between_edit_and_scene(photos):
    tex = TextureMismatch(p=1.0, smooth_p=0, jpeg_p=0, noise_p=1.0, noise_sigma_edit=(0.0, 0.0),
                          noise_sigma_scene=(0.05, 0.05), vae_p=0)
    out = only(texture=tex)(photos[0], g(0), mask=box_mask())
    inside = out["mask"].expand_as(photos[0]) > 0
    assert torch.equal(out["x_gen"][inside], photos[0][inside])
    assert (out["x_gt"] - photos[0])[inside].std() == pytest.approx(0.05, rel=0.25)


def test_smoothing_blurs_only_the_edit(photos):
    tex = TextureMismatch(p=1.0, smooth_p=1.0, smooth_sigma=(2.0, 2.0), jpeg_p=0, noise_p=0, vae_p=0)
    out = only(texture=tex)(photos[1], g(0), mask=box_mask())
    inside = out["mask"].expand_as(photos[1]) > 0
    assert torch.equal(out["x_gen"][~inside], photos[1][~inside])
    grad = lambda x: (x[:, 40:88, 41:88] - x[:, 40:88, 40:87]).abs().mean()  # noqa: E731
    assert grad(out["x_gen"]) < 0.7 * grad(photos[1])


def highpass(x):
    return x - torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


@pytest.mark.skipif(not TAEF2.is_dir(), reason=f"TAEF2 weights not found at {TAEF2}")
def test_taef2_roundtrip_changes_high_frequencies_inside_the_mask_only(photos):
    device_sim = DeviceSimulation(autoencoder=str(TAEF2))
    tex = TextureMismatch(p=1.0, smooth_p=0, jpeg_p=0, noise_p=0, vae_p=1.0)
    pipe = only(texture=tex)
    for i, photo in enumerate(photos[:3]):
        out = pipe(photo, g(i), mask=box_mask())
        assert bool(out["vae"]) and out["applied"] == ["texture.vae"]
        batch = {k: out[k][None] for k in ("x_gen", "mask", "alpha", "vae")}
        x_gen = device_sim(batch)["x_gen"][0]
        inside = out["mask"].expand_as(photo) > 0
        assert torch.equal(x_gen[~inside], photo[~inside])
        mse = (x_gen - photo)[inside].square().mean()
        psnr = float(10 * torch.log10(1 / mse))
        assert 20 < psnr < 35, psnr
        hf_change = (highpass(x_gen[None]) - highpass(photo[None]))[0][inside].abs().mean()
        lf_change = (torch.nn.functional.avg_pool2d(x_gen[None], 8) - torch.nn.functional.avg_pool2d(photo[None], 8)).abs().mean()
        assert hf_change > lf_change  # texture, not colour, is what the round trip alters


@pytest.mark.skipif(not TAEF2.is_dir(), reason=f"TAEF2 weights not found at {TAEF2}")
def test_roundtrip_any_size_keeps_shape():
    device_sim = DeviceSimulation(autoencoder=str(TAEF2))
    x = torch.rand(1, 3, 37, 50)
    assert roundtrip_any_size(device_sim.model, x).shape == x.shape


def test_diffusers_autoencoderkl_loads_from_a_local_folder(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1)
    vae.save_pretrained(tmp_path / "pipe" / "vae")
    sim = DeviceSimulation(autoencoder=str(tmp_path / "pipe"))  # finds the vae/ subfolder
    assert type(sim.model).__name__ == "DiffusersVAE"
    batch = {"x_gen": torch.rand(2, 3, 32, 32), "mask": box_mask(32, 8, 24)[None].expand(2, -1, -1, -1),
             "vae": torch.tensor([True, False])}
    batch["alpha"] = batch["mask"]
    out = sim(batch)["x_gen"]
    assert torch.equal(out[1], batch["x_gen"][1])  # unflagged sample untouched
    assert not torch.equal(out[0], batch["x_gen"][0])
    assert torch.equal(out[0][:, :8], batch["x_gen"][0][:, :8])  # outside the alpha untouched


def seam(x: torch.Tensor, lo=32, hi=96) -> float:
    """Mean absolute jump across the left/right edges of the box vs the next column pair inside."""
    rows = slice(lo + 4, hi - 4)
    across = (x[:, rows, lo] - x[:, rows, lo - 1]).abs().mean() + (x[:, rows, hi - 1] - x[:, rows, hi]).abs().mean()
    return float(across)


def test_content_band_changes_only_the_band_and_leaves_a_seam(photos):
    band_op = ContentBand(p=1.0, width=(4, 4))
    pipe = only(content_band=band_op)
    seams_gen, seams_gt = [], []
    for i, photo in enumerate(photos):
        mask = box_mask()
        out = pipe(photo, g(i), mask=mask)
        band = torch.from_numpy(boundary_band(mask[0].numpy().astype(np.uint8), 4).astype(bool))
        changed = (out["x_gen"] != photo).any(dim=0)
        assert not (changed & ~band).any()
        assert changed.any()
        seams_gen.append(seam(out["x_gen"]))
        seams_gt.append(seam(photo))
    assert np.mean(seams_gen) > 1.2 * np.mean(seams_gt)


def test_content_band_accepts_a_custom_inpainter(photos):
    flat = ContentBand(p=1.0, width=(3, 3), inpainter=lambda img, region, seed: np.full_like(img, 128))
    out = only(content_band=flat)(photos[0], g(0), mask=box_mask())
    band = torch.from_numpy(boundary_band(box_mask()[0].numpy().astype(np.uint8), 3).astype(bool)) & (box_mask()[0] > 0)
    assert torch.allclose(out["x_gen"][:, band], torch.tensor(128 / 255))
    with pytest.raises(ValueError, match="content_band.method"):
        ContentBand(method="magic")


def test_family_probabilities_over_2000_draws():
    """Each family fires at its p (paper defaults), within 3σ."""
    pipe = SimulationPipeline(
        MaskGenerator(object_p=0.0), color_shift=ColorShift(p=0.8),
        texture=TextureMismatch(p=0.5, smooth_p=0, jpeg_p=0, noise_p=0, vae_p=0.5),
        content_band=ContentBand(p=0.5), boundary=BoundarySoftening(p=1.0))
    img = torch.rand(3, 16, 16)
    n = 2000
    counts = {"color_shift": 0, "texture.vae": 0, "content_band": 0, "boundary": 0}
    for s in range(n):
        applied = pipe(img, g(s))["applied"]
        for k in counts:
            counts[k] += k in applied
    for family, p in (("color_shift", 0.8), ("texture.vae", 0.25), ("content_band", 0.5), ("boundary", 1.0)):
        sigma = (n * p * (1 - p)) ** 0.5
        assert abs(counts[family] - n * p) <= 3 * sigma + 1e-9, (family, counts[family])


def test_object_masks_are_used_with_their_probability():
    pipe = SimulationPipeline(MaskGenerator(object_p=0.3))
    obj = box_mask(32, 4, 8)
    n = 600
    hits = sum(torch.equal(pipe(torch.rand(3, 32, 32), g(s), mask=obj)["mask"], obj) for s in range(n))
    assert abs(hits - 0.3 * n) <= 3 * (n * 0.21) ** 0.5


def test_full_default_pipeline_is_deterministic(photos, compose_cfg):
    from hydra.utils import instantiate

    pipe = instantiate(compose_cfg([]).simulation)
    for i in range(8):
        a, b = pipe(photos[i % len(photos)], g(i)), pipe(photos[i % len(photos)], g(i))
        for k in ("x_gt", "x_gen", "mask", "alpha", "vae"):
            assert torch.equal(a[k], b[k])
        assert a["applied"] == b["applied"]
        cov = a["mask"].mean().item()
        assert 0.05 <= cov <= 0.5


def test_tiny_and_corrupt_images_fail_clearly_or_are_skipped(tmp_path, compose_cfg):
    from hydra.utils import instantiate

    from data.stream import SampleProcessor, ShardStream

    pipe = instantiate(compose_cfg([]).simulation)
    with pytest.raises(ValueError, match="too small"):
        pipe(torch.rand(3, 10, 40), g(0))
    import io

    import webdataset as wds
    from PIL import Image

    def png(size):
        buf = io.BytesIO()
        Image.fromarray((np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    shard = tmp_path / "s.tar"
    with wds.TarWriter(str(shard)) as sink:
        sink.write({"__key__": "tiny", "png": png((4, 5))})
        sink.write({"__key__": "bad", "jpg": b"\xff\xd8 broken"})
        sink.write({"__key__": "ok", "png": png((40, 48))})
    out = list(ShardStream([str(shard)], SampleProcessor(32, pipe), shuffle_buffer=0))
    assert [o["key"] for o in out] == ["ok"] and out[0]["n_skipped"] == 2


def test_content_band_with_a_diffusers_inpainting_pipeline(photos, tmp_path):
    from simulation.ops.content_band import DiffusersInpainter
    from tiny_diffusers import tiny_inpaint_pipeline

    pipe = tiny_inpaint_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "saved")
    inpainter = DiffusersInpainter(str(tmp_path / "saved"), prompt="a photo", num_inference_steps=2)
    op = ContentBand(p=1.0, width=(3, 3), inpainter=inpainter)
    image = photos[0][:, :60, :60]  # not a multiple of 8: resized inside and back
    mask = box_mask(60, 16, 44)
    a, b = op(image, mask, g(1)), op(image, mask, g(1))
    assert torch.equal(a, b)  # seeded
    band = torch.from_numpy(boundary_band(mask[0].numpy().astype(np.uint8), 3).astype(bool))
    changed = (a != image).any(dim=0)
    assert changed[band].float().mean() > 0.5 and not changed[~band].any()


def test_public_call_with_only_color_shift_leaves_the_outside_untouched(photos, compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg(["simulation.texture=null", "simulation.content_band=null", "simulation.boundary=null",
                       "simulation.color_shift.p=1", "simulation.clean_p=0", "simulation.global_drift=null"])
    simulate = instantiate(cfg.simulation)
    for i, photo in enumerate(photos):
        out = simulate(photo, generator=g(i))
        assert set(out) >= {"x_gt", "x_gen", "mask"}
        outside = out["mask"].expand_as(photo) == 0
        assert torch.equal(out["x_gen"][outside], photo[outside]) and torch.equal(out["x_gt"], photo)
        assert not torch.equal(out["x_gen"], photo)


def test_pasted_samples_keep_the_scene_outside_the_mask_and_feather_inside(photos):
    """paste_p=1: nothing of the edit spills outside the (binary) mask; a blurred alpha shows as a ramp
    inside it, so the seam is a step on the mask. paste_p=0 draws nothing: the samples of a pipeline
    without the option, bit for bit."""
    families = dict(color_shift=ColorShift(p=1.0, alpha_kinds=["constant"]),
                    boundary=BoundarySoftening(p=1.0, radius=(0, 0), blur_sigma=(3.0, 3.0), p_blur=1.0))
    pasted = SimulationPipeline(MaskGenerator(object_p=1.0), paste_p=1.0, **families)
    spilled = SimulationPipeline(MaskGenerator(object_p=1.0), **families)
    for i, photo in enumerate(photos[:3]):
        a, b = pasted(photo, g(i), mask=box_mask()), spilled(photo, g(i), mask=box_mask())
        outside = box_mask().expand(3, -1, -1) == 0
        assert torch.equal(a["x_gen"][outside], a["x_gt"][outside]) and "paste" in a["applied"]
        assert (b["x_gen"][outside] - b["x_gt"][outside]).abs().max() > 0.01  # the feathered cast spills
        assert torch.equal(a["x_gen"][~outside], b["x_gen"][~outside])  # inside, the same feathered edit
        inner = a["alpha"][0, 32:96, 32:96]
        assert inner.min() < 0.7 and inner.max() > 0.99 and a["alpha"][0][box_mask()[0] == 0].max() == 0
    zero = SimulationPipeline(MaskGenerator(object_p=0.0), paste_p=0.0, **families)
    tiny = SimulationPipeline(MaskGenerator(object_p=0.0), paste_p=1e-12, **families)  # draws, never pastes
    for s in range(4):
        ga, gb = g(s), g(s)
        x, y = zero(photos[0], ga), tiny(photos[0], gb)
        assert torch.equal(x["x_gen"], y["x_gen"]) and x["applied"] == y["applied"]
        assert not torch.equal(ga.get_state(), gb.get_state())  # the one extra draw: paste_p=0 makes none
        fresh = g(s)
        SimulationPipeline(MaskGenerator(object_p=0.0), **families)(photos[0], fresh)
        assert torch.equal(fresh.get_state(), ga.get_state())  # paste_p=0 consumes what the old pipeline did
    with pytest.raises(ValueError, match="paste_p"):
        SimulationPipeline(MaskGenerator(), paste_p=1.5)


def test_a_sample_no_family_changed_is_labelled_clean_and_is_its_target_bit_for_bit(photos):
    """A boundary drawn alone, or global drift drawn alone on a pasted sample (which gets no drift),
    leaves the edit as the scene: x_gen must then equal x_gt exactly (a soft alpha blend of x with
    itself is not x in floats) and the sample is labelled ``clean`` as well as ``boundary``."""
    from simulation.ops.global_drift import GlobalDrift

    seam = BoundarySoftening(p=1.0, radius=(-2, 2), blur_sigma=(1.0, 3.0), p_blur=1.0)
    seam_only = SimulationPipeline(MaskGenerator(object_p=1.0), boundary=seam)
    drift_pasted = SimulationPipeline(MaskGenerator(object_p=1.0), boundary=seam, global_drift=GlobalDrift(p=1.0),
                                      alone_p=1.0, paste_p=1.0)
    drift = SimulationPipeline(MaskGenerator(object_p=1.0), boundary=seam, global_drift=GlobalDrift(p=1.0))
    for i, photo in enumerate(photos[:3]):
        for pipe in (seam_only, drift_pasted):
            out = pipe(photo, g(i), mask=box_mask())
            assert out["applied"][0] == "boundary" and out["applied"][-1] == "clean"
            assert torch.equal(out["x_gen"], out["x_gt"])
            assert out["alpha"][0, 30:34, 64].min() < 0.99  # the seam was drawn soft all the same
        drifted = drift(photo, g(i), mask=box_mask())  # not pasted: drift applies, the sample is not clean
        assert drifted["applied"] == ["boundary", "global_drift"] and (drifted["x_gen"] - drifted["x_gt"]).abs().max() > 1e-3
