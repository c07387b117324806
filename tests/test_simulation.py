import pytest
import torch

from conftest import load_photo
from simulation import BoundarySoftening, ColorShift, MaskGenerator, SimulationPipeline
from simulation.ops.alpha_maps import gradient_alpha


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_color_shift_only_changes_the_masked_region(photo):
    pipe = SimulationPipeline(MaskGenerator(), color_shift=ColorShift(p=1.0))
    for seed in range(5):
        out = pipe(photo, generator=g(seed))
        outside = out["mask"].expand_as(photo) == 0
        assert torch.equal(out["x_gen"][outside], out["x_gt"][outside])
        inside = ~outside
        assert (out["x_gen"][inside] - out["x_gt"][inside]).abs().mean() > 1e-3
        assert out["applied"] == ["color_shift"]


def test_color_shift_moves_the_masked_mean_colour(photo):
    op = ColorShift(p=1.0, brightness=(1.1, 1.1), contrast=(1, 1), saturation=(1, 1), hue=(0, 0), gamma=(1, 1),
                    channel_gain=(1, 1), alpha_kinds=["constant"])
    mask = torch.ones(1, *photo.shape[-2:])
    shifted = op(photo * 0.8, mask, g(0))
    assert (shifted - photo * 0.8).mean().item() == pytest.approx(0.1, abs=0.01)


def test_gradient_alpha_maps_in_range_and_vary():
    for kind in ("linear", "radial", "noise"):
        a = gradient_alpha(32, 40, g(1), kinds=(kind,), min_alpha=0.3)
        assert a.shape == (1, 32, 40)
        assert a.min().item() == pytest.approx(0.3, abs=1e-5) and a.max().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.all(gradient_alpha(8, 8, g(1), kinds=("constant",)) == 1)


def test_masks_respect_coverage_and_are_binary():
    gen = MaskGenerator(coverage=(0.1, 0.3))
    for seed in range(60):
        m = gen(64, 80, g(seed))
        assert m.shape == (1, 64, 80)
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        assert 0.1 <= m.mean().item() <= 0.3


@pytest.mark.parametrize("family", ["strokes", "blobs", "boxes", "outpaint"])
def test_each_mask_family_alone(family):
    gen = MaskGenerator(weights={family: 1.0}, coverage=(0.02, 0.6))
    masks = [gen(64, 64, g(s)) for s in range(10)]
    assert all(0.02 <= m.mean() <= 0.6 for m in masks)
    assert len({m.sum().item() for m in masks}) > 3  # not one fixed shape


def test_boundary_op_gives_soft_and_hard_edges():
    op = BoundarySoftening(p=1.0, radius=(-3, 6), blur_sigma=(1.0, 4.0), p_blur=0.5)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    soft = hard = 0
    for seed in range(40):
        a = op(mask, mask, g(seed))
        fractional = ((a > 0.02) & (a < 0.98)).float().mean().item()
        if fractional == 0:
            hard += 1
            assert set(a.unique().tolist()) <= {0.0, 1.0}
        else:
            soft += 1
    assert soft >= 5 and hard >= 5


def test_boundary_dilates_and_erodes():
    op = BoundarySoftening(p=1.0, radius=(-4, 4), p_blur=0.0)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    areas = {op(mask, mask, g(s)).sum().item() for s in range(30)}
    assert min(areas) < mask.sum().item() < max(areas)


def test_boundary_p_shift_sets_the_share_of_seams_off_the_mask():
    """p_shift = 0: every hard seam is the mask itself; 0.25: about a quarter are moved (radius
    never 0 here); 1.0 (the default) moves every one."""
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    on_mask = BoundarySoftening(p=1.0, radius=(2, 4), p_blur=0.0, p_shift=0.0)
    assert all(torch.equal(on_mask(mask, mask, g(s)), mask) for s in range(20))
    some = BoundarySoftening(p=1.0, radius=(2, 4), p_blur=0.0, p_shift=0.25)
    moved = sum(not torch.equal(some(mask, mask, g(s)), mask) for s in range(400))
    assert 70 <= moved <= 130
    always = BoundarySoftening(p=1.0, radius=(2, 4), p_blur=0.0)  # the default p_shift = 1
    assert all(not torch.equal(always(mask, mask, g(s)), mask) for s in range(20))
    with pytest.raises(ValueError, match="p_shift"):
        BoundarySoftening(p_shift=1.5)


def test_pipeline_is_deterministic_and_seed_sensitive(photo):
    pipe = SimulationPipeline(MaskGenerator(), color_shift=ColorShift(p=0.8), boundary=BoundarySoftening())
    a, b, c = pipe(photo, g(7)), pipe(photo, g(7)), pipe(photo, g(8))
    for k in ("x_gen", "mask", "alpha"):
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["mask"], c["mask"])


def test_pipeline_probability_is_respected(photo):
    small = photo[:, :24, :24]
    pipe = SimulationPipeline(MaskGenerator(), color_shift=ColorShift(p=0.3))
    n = 400
    hits = sum("color_shift" in pipe(small, g(s))["applied"] for s in range(n))
    sigma = (n * 0.3 * 0.7) ** 0.5
    assert abs(hits - n * 0.3) < 3 * sigma


def test_pipeline_uses_a_given_mask_and_batches(photo):
    pipe = SimulationPipeline(MaskGenerator(object_p=1.0), color_shift=ColorShift(p=1.0))
    mask = torch.zeros(1, *photo.shape[-2:])
    mask[:, :10, :10] = 1
    assert torch.equal(pipe(photo, g(0), mask=mask)["mask"], mask)
    batch = pipe(torch.stack([photo, photo]), g(0))
    assert batch["x_gen"].shape == (2, *photo.shape) and len(batch["applied"]) == 2


def test_pipeline_rejects_bad_images(photo):
    pipe = SimulationPipeline(MaskGenerator())
    with pytest.raises(ValueError, match="too small"):
        pipe(photo[:, :8, :8], g(0))
    with pytest.raises(ValueError, match="RGB"):
        pipe(photo[:1], g(0))


def test_bad_op_configs_are_named():
    with pytest.raises(ValueError, match="color_shift.p"):
        ColorShift(p=1.5)
    with pytest.raises(ValueError, match="color_shift.hue"):
        ColorShift(hue=(0.2, -0.2))
    with pytest.raises(ValueError, match="masks.weights"):
        MaskGenerator(weights={"squiggles": 1.0})
    with pytest.raises(ValueError, match="masks.coverage"):
        MaskGenerator(coverage=(0.5, 0.1))


def test_real_photo_simulation_is_plausible(cbsd68_photos):
    """On real photos the artifact is visible but moderate (it must stay learnable)."""
    pipe = SimulationPipeline(MaskGenerator(), color_shift=ColorShift(p=1.0), boundary=BoundarySoftening())
    errs = []
    for i, path in enumerate(cbsd68_photos[:8]):
        out = pipe(load_photo(path, 128), g(i))
        m = out["mask"]
        errs.append(((out["x_gen"] - out["x_gt"]).abs() * m).sum().item() / (3 * m.sum().item()))
    mean_err = sum(errs) / len(errs)
    assert 0.01 < mean_err < 0.2
