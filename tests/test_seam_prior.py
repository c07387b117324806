"""The seam offset (a membrane fill of the colour step across the mask boundary), the refiner's
``seam_prior`` option, and the gradient-domain baselines that must not read the original under
the mask."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch

from evaluation.baselines import BASELINES
from pixperfect.models import CMGANRefiner
from pixperfect.models.seam_offset import DEFAULT_CG, cg_iterations, push_pull_fill, seam_offset


def _blob_mask(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.functional.avg_pool2d(torch.rand(1, 1, h, w, generator=g), 9, 1, 4) > 0.52
    return m.double()


def _membrane_reference(image: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """Pérez et al.'s discrete equations, written out as a sparse matrix and solved directly:
    |N_q| h_q − Σ_{p ∈ N_q ∩ Ω} h_p = Σ_{p ∈ N_q \\ Ω} (x_p − x_q)."""
    c, h, w = image.shape
    idx = -np.ones((h, w), int)
    ys, xs = np.nonzero(binary)
    idx[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [], [], []
    rhs = np.zeros((len(ys), c))
    for k, (y, x) in enumerate(zip(ys, xs)):
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            py, px = y + dy, x + dx
            if not (0 <= py < h and 0 <= px < w):
                continue
            rows.append(k), cols.append(k), vals.append(1.0)
            if binary[py, px]:
                rows.append(k), cols.append(idx[py, px]), vals.append(-1.0)
            else:
                rhs[k] += image[:, py, px] - image[:, y, x]
    a = sp.csc_matrix((vals, (rows, cols)), shape=(len(ys), len(ys)))
    out = np.zeros_like(image)
    for ch in range(c):
        out[ch, ys, xs] = spl.spsolve(a, rhs[:, ch])
    return out


def test_exact_membrane_equals_a_sparse_direct_solve():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 40, 48, generator=g, dtype=torch.float64)
    mask = _blob_mask(40, 48)
    ours = seam_offset(image, mask, ring=0, shrink=0.0, iterations=2000, compensate=False)[0].numpy()
    ref = _membrane_reference(image[0].numpy(), mask[0, 0].numpy() > 0.5)
    assert np.abs(ours - ref).max() < 1e-6


@pytest.mark.parametrize("iterations", [0, None])
def test_a_uniform_cast_on_a_smooth_image_is_removed(iterations):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    clean = torch.stack([0.3 + 0.2 * xx, 0.5 + 0.1 * yy, 0.4 + 0.0 * xx])[None].double()
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    mask[..., 16:44, 20:50] = 1
    cast = torch.tensor([0.08, -0.05, 0.03], dtype=torch.float64)[None, :, None, None]
    edited = clean + cast * mask
    fixed = edited + seam_offset(edited, mask, iterations=iterations)
    before = ((edited - clean).abs() * mask).sum()
    after = ((fixed - clean).abs() * mask).sum()
    assert after / before < 0.05


def test_the_jump_ignores_shading_across_the_seam_and_keeps_a_cast():
    """A linear ramp crossing the seam is a step between neighbours but not a jump: the
    compensated estimate leaves it alone, the raw step moves the edit by the ramp's slope. A cast
    on top of the ramp is measured the same either way."""
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    ramp = torch.stack([0.2 + 0.01 * xx, 0.3 + 0.008 * yy, 0.5 - 0.004 * xx])[None].double()
    mask = torch.zeros(1, 1, 48, 64, dtype=torch.float64)
    mask[..., 12:36, 16:48] = 1
    kw = dict(ring=0, shrink=0.0, iterations=0)
    assert seam_offset(ramp, mask, compensate=True, **kw).abs().max() < 1e-6  # push-pull eps
    assert seam_offset(ramp, mask, compensate=False, **kw).abs().max() > 4e-3  # about one slope
    cast = torch.tensor([0.06, -0.04, 0.02], dtype=torch.float64)[None, :, None, None]
    for compensate in (True, False):
        fixed = ramp + cast * mask + seam_offset(ramp + cast * mask, mask, compensate=compensate, iterations=0)
        residual = ((fixed - ramp).abs() * mask).sum() / (cast.abs() * mask).sum()
        assert residual < (0.02 if compensate else 0.25)


def _feathered_cast(sigma: float, cast: float = 0.1, size: int = 96) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean ramp, its feathered paste with a cast: alpha = the disc blurred by sigma, disc mask)."""
    import cv2

    yy, xx = np.mgrid[:size, :size]
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).astype(np.float64)
    alpha = cv2.GaussianBlur(disc, (0, 0), sigma) if sigma else disc
    ramp = np.broadcast_to(np.linspace(0.2, 0.8, size), (size, size))
    clean = torch.from_numpy(np.stack([ramp] * 3).copy())[None]
    return clean, clean + cast * torch.from_numpy(alpha)[None, None], torch.from_numpy(disc)[None, None]


@pytest.mark.parametrize("gap", [1, 2, 4, 8])
def test_a_ramp_is_no_jump_at_any_gap(gap):
    clean, _, mask = _feathered_cast(0.0)
    assert seam_offset(clean, mask, ring=0, shrink=0.0, iterations=0, gap=gap).abs().max() < 1e-6


def test_a_wider_gap_reads_a_feathered_seam_whole():
    """A cast pasted through a feather of sigma px is a smooth ramp at the seam: the one-pixel jump
    compensates it away (< 10% of the cast read), a gap of 3·sigma reads nearly all of it; a hard
    paste is read whole at every gap."""
    centre = (..., 48, 48)
    for sigma, gap, lo, hi in ((2.0, 1, 0.0, 0.1), (2.0, 6, 0.85, 1.05), (0.0, 1, 0.99, 1.01), (0.0, 6, 0.99, 1.01)):
        _, pasted, mask = _feathered_cast(sigma)
        read = -seam_offset(pasted, mask, iterations=0, gap=gap)[centre] / 0.1
        assert (lo <= read).all() and (read <= hi).all(), (sigma, gap, read)


def _reference_flux(image: np.ndarray, mask: np.ndarray, gap: int) -> np.ndarray:
    """The documented estimator pixel by pixel: per mask pixel, over its background 4-neighbours,
    the jump read ``gap`` px out / ``gap − 1`` in where both sides are deep enough, else the
    one-pixel jump, else the plain step."""
    c, h, w = image.shape
    flux = np.zeros_like(image)
    inside = lambda y, x: 0 <= y < h and 0 <= x < w  # noqa: E731
    bg = lambda y, x: inside(y, x) and not mask[y, x]  # noqa: E731
    fg = lambda y, x: inside(y, x) and mask[y, x]  # noqa: E731
    for y, x in zip(*np.nonzero(mask)):
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            if not bg(y + dy, x + dx):
                continue
            px = lambda k: image[:, y + k * dy, x + k * dx]  # noqa: E731
            value = px(1) - px(0)
            for g in sorted({1, gap}):
                if bg(y + g * dy, x + g * dx) and bg(y + 2 * g * dy, x + 2 * g * dx) \
                        and fg(y - (g - 1) * dy, x - (g - 1) * dx) and fg(y - (2 * g - 1) * dy, x - (2 * g - 1) * dx):
                    c_ = (2 * g - 1) / (2 * g)
                    value = px(g) - px(1 - g) - c_ * (px(2 * g) - px(g)) - c_ * (px(1 - g) - px(1 - 2 * g))
            flux[:, y, x] += value
    return flux


@pytest.mark.parametrize("gap", [1, 3])
def test_seam_step_equals_a_pixel_by_pixel_reference(gap):
    from pixperfect.models.seam_offset import seam_step

    g = torch.Generator().manual_seed(5)
    image, mask = torch.rand(1, 3, 40, 40, generator=g, dtype=torch.float64), _blob_mask(40, 40)
    flux, _ = seam_step(image, mask, radius=0, shrink=0.0, compensate=True, gap=gap)
    reference = _reference_flux(image[0].numpy(), mask[0, 0].numpy() > 0.5, gap)
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(flux[0].numpy(), reference, atol=1e-12)


def test_bad_gaps_are_errors():
    g = torch.Generator().manual_seed(5)
    image, mask = torch.rand(1, 3, 40, 40, generator=g), _blob_mask(40, 40).float()
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="gap must be a whole number"):
            seam_offset(image, mask, gap=bad)


def test_refiner_seam_gap_is_a_fraction_of_the_side():
    """``seam_gap=1/64``: the untrained refiner adds the offset read 4 px out at 256² (2 at 128²)."""
    refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True, seam_gap=1 / 64)
    for size, gap in ((128, 2), (256, 4)):
        _, pasted, mask = _feathered_cast(0.01 * size, size=size)
        pasted, mask = pasted.float(), mask.float()
        with torch.no_grad():
            out = refiner(pasted, mask)
        expected = (pasted + seam_offset(pasted, mask, iterations=cg_iterations(DEFAULT_CG, *pasted.shape[-2:]), gap=gap)).clamp(0, 1)
        assert torch.allclose(out, expected, atol=1e-6)
        assert not torch.allclose(out, (pasted + seam_offset(pasted, mask, iterations=cg_iterations(DEFAULT_CG, *pasted.shape[-2:]))).clamp(0, 1), atol=1e-3)
    with pytest.raises(ValueError, match="seam_gap"):
        CMGANRefiner(channels=[8, 16, 32], seam_prior=True, seam_gap=0.5)


def test_no_step_no_offset_and_nothing_outside_the_mask():
    g = torch.Generator().manual_seed(2)
    image = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    mask = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
    mask[0, :, 8:20, 8:24] = 1
    mask[1] = 1  # no boundary at all
    offset = seam_offset(image, mask)
    assert offset[1].abs().max() == 0
    assert (offset[0] * (1 - mask[0])).abs().max() == 0
    flat = torch.full((1, 3, 32, 32), 0.4, dtype=torch.float64)
    assert seam_offset(flat, mask[:1]).abs().max() < 1e-12


def test_push_pull_keeps_known_values_and_fills_holes_between_them():
    values = torch.zeros(1, 1, 16, 16)
    weights = torch.zeros(1, 1, 16, 16)
    values[..., :, 0], weights[..., :, 0] = 1.0, 1.0
    values[..., :, -1], weights[..., :, -1] = 3.0, 1.0
    filled = push_pull_fill(values, weights)
    assert torch.allclose(filled[..., :, 0], torch.ones(16)) and torch.allclose(filled[..., :, -1], torch.full((16,), 3.0))
    middle = filled[0, 0, 8, 1:-1]
    assert (middle > 1.0).all() and (middle < 3.0).all()
    assert push_pull_fill(values, torch.zeros_like(weights)).abs().max() == 0


def test_untrained_refiner_with_seam_prior_returns_input_plus_offset():
    refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True)
    g = torch.Generator().manual_seed(3)
    image = 0.4 + 0.1 * torch.rand(2, 3, 40, 56, generator=g)  # texture a 0.1 cast stands out of
    mask = torch.zeros(2, 1, 40, 56)
    mask[..., 10:30, 12:40] = 1
    edited = (image + 0.1 * mask).clamp(0, 1)
    with torch.no_grad():
        out = refiner(edited, mask)
    expected = (edited + seam_offset(edited, mask, iterations=cg_iterations(DEFAULT_CG, *edited.shape[-2:]))).clamp(0, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    # the `seam_offset` evaluation row is this refiner at step 0 (background pasted from x_orig)
    assert torch.allclose(BASELINES["seam_offset"](edited, mask, edited), out, atol=1e-6)
    assert not torch.equal(out, edited)
    plain = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16)
    assert plain.stem.in_channels == 4 and refiner.stem.in_channels == 7
    assert refiner.to_rgb.out_channels == plain.to_rgb.out_channels + 1


def test_a_fixed_gain_adds_the_offset_as_it_is(tmp_path):
    """``seam_gain=False``: no gain channel; trained or not, the output is x + offset + Δ, so with
    the head's Δ zeroed the offset passes whole whatever the other weights are."""
    refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True, seam_gain=False)
    assert refiner.to_rgb.out_channels == 12 and refiner.stem.in_channels == 7
    g = torch.Generator().manual_seed(6)
    image = torch.rand(1, 3, 32, 40, generator=g) * 0.6 + 0.2
    mask = torch.zeros(1, 1, 32, 40)
    mask[..., 8:24, 10:30] = 1
    edited = image + 0.1 * mask
    with torch.no_grad():
        for p in refiner.parameters():  # scramble everything, then silence only the output head
            p.normal_(0, 0.1, generator=g)
        for p in (*refiner.to_rgb.parameters(), *refiner.global_affine.parameters()):
            p.zero_()
        out = refiner(edited, mask)
    assert torch.allclose(out, (edited + seam_offset(edited, mask, iterations=cg_iterations(DEFAULT_CG, *edited.shape[-2:]))).clamp(0, 1), atol=1e-6)
    refiner.save_pretrained(tmp_path)
    assert CMGANRefiner.from_pretrained(tmp_path).seam_gain is False


def test_seam_prior_refiner_round_trips(tmp_path):
    refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True)
    refiner.save_pretrained(tmp_path)
    loaded = CMGANRefiner.from_pretrained(tmp_path)
    assert loaded.seam_prior
    x, m = torch.rand(1, 3, 32, 32), (torch.rand(1, 1, 32, 32) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(refiner(x, m), loaded(x, m))


@pytest.mark.parametrize("name", ["input", "paste_back", "poisson", "membrane", "seam_offset", "reinhard", "histogram"])
def test_baselines_never_read_the_original_under_the_mask(name):
    """What the edit replaced is not available to a real edit (nor, in a benchmark, fair to use: it
    is the ground truth). Only ``poisson_oracle`` reads it, and says so."""
    g = torch.Generator().manual_seed(4)
    orig = torch.rand(1, 3, 48, 48, generator=g)
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 12:36, 14:38] = 1
    edit = (orig + 0.1 * mask).clamp(0, 1)
    other = orig * (1 - mask) + torch.rand(1, 3, 48, 48, generator=g) * mask
    fn = BASELINES[name]
    assert torch.equal(fn(edit, mask, orig), fn(edit, mask, other))
    oracle = BASELINES["poisson_oracle"]
    assert not torch.equal(oracle(edit, mask, orig), oracle(edit, mask, other))


def test_membrane_removes_a_pasted_cast_that_opencv_poisson_cannot():
    """On a paste-back composite the edit's gradients include the step, so textbook Poisson
    cloning keeps the cast; the membrane (no guidance across the seam) removes it."""
    rng = np.random.default_rng(0)
    orig = torch.from_numpy(np.clip(0.5 + 0.03 * rng.standard_normal((1, 3, 64, 64)), 0, 1)).float()
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:44, 16:48] = 1
    edit = orig + 0.1 * mask
    err = lambda out: float(((out - orig).abs() * mask).sum() / ((edit - orig).abs() * mask).sum())  # noqa: E731
    assert err(BASELINES["poisson"](edit, mask, orig)) > 0.9
    assert err(BASELINES["membrane"](edit, mask, orig)) < 0.2
    assert err(BASELINES["poisson_oracle"](edit, mask, orig)) < 0.1


def test_separable_box_sum_equals_the_square_window():
    from pixperfect.models.seam_offset import _box_sum

    x = torch.rand(2, 3, 50, 60, dtype=torch.float64)
    for radius in (0, 5, 40):  # 40: the window is wider than the image (the default at this size)
        k = 2 * radius + 1
        padded = torch.nn.functional.pad(x, (radius,) * 4)
        reference = torch.nn.functional.avg_pool2d(padded, k, 1) * (k * k)
        assert torch.allclose(_box_sum(x, radius), reference, atol=1e-10)
    # half precision in, half precision out, but accumulated in float32: a bfloat16 running sum
    # over a 512-px row would be off by whole units
    row = torch.full((1, 1, 1, 512), 0.3, dtype=torch.bfloat16)
    out = _box_sum(row, 8)
    assert out.dtype == torch.bfloat16 and torch.allclose(out[..., 100:400].float(), torch.full((300,), 5.1), rtol=1e-2)


def test_the_gain_on_the_offset_is_learned():
    """The head's last channel scales the offset: an L1 step on a cast sample moves it, and with
    the gain at −1 the refiner is back to the plain identity."""
    refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True)
    g = torch.Generator().manual_seed(5)
    clean = torch.rand(2, 3, 32, 32, generator=g) * 0.5 + 0.25
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    edited = clean + 0.1 * mask
    loss = (refiner(edited, mask) - clean).abs().mean()
    loss.backward()
    assert refiner.to_rgb.bias.grad[-1].abs() > 0
    with torch.no_grad():
        refiner.to_rgb.bias[-1] = -1.0
        assert torch.allclose(refiner(edited, mask), edited.clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("image,mask,kw,message", [
    (torch.rand(3, 16, 16), torch.ones(1, 16, 16), {}, "N×3×H×W"),
    (torch.rand(1, 3, 16, 16), torch.ones(1, 1, 8, 8), {}, "does not match"),
    (torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16), {"ring": -1}, "≥ 0"),
])
def test_bad_input_is_one_clear_error(image, mask, kw, message):
    with pytest.raises(ValueError, match=message):
        seam_offset(image, mask, **kw)


def _seam_with_alternating_jumps(cast: float, wobble: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat image whose right half is the edit; along the seam (column 32) the edit's first
    column is off by ``cast`` plus ``±wobble`` alternating row by row: the raw step per crossing is
    −(cast ± wobble), a known mean and spread."""
    image = torch.full((1, 3, 64, 64), 0.5, dtype=torch.float64)
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    mask[..., 32:] = 1
    signs = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(64)], dtype=torch.float64)
    image[..., 32:] += cast
    image[..., :, 32] += wobble * signs[None, :]
    return image, mask


@pytest.mark.parametrize("cast,wobble", [(0.05, 0.04), (0.05, 0.2), (0.0, 0.1)])
def test_shrinkage_rules_equal_their_formulas_on_a_known_seam(cast, wobble):
    """The window mean μ and variance of the step along a straight seam, computed by hand for one
    row, give ν = shrink·var/(2R+1); James–Stein scales μ by max(0, 1 − ν/|μ|²), Wiener by
    |μ|²/(|μ|² + ν). (0.05, 0.2): the cast is within the noise, so James–Stein reads exactly 0."""
    from pixperfect.models.seam_offset import seam_step

    image, mask = _seam_with_alternating_jumps(cast, wobble)
    radius, shrink, row = 6, 6.0, 30
    steps = np.array([-(cast + wobble * (1 if i % 2 == 0 else -1)) for i in range(row - radius, row + radius + 1)])
    mu, var = steps.mean(), steps.var()
    signal, noise = 3 * mu**2, shrink * 3 * var / (2 * radius + 1)
    expected = {"james_stein": mu * max(0.0, 1 - noise / (signal + 1e-12)), "wiener": mu * signal / (signal + noise + 1e-12)}
    for rule, value in expected.items():
        flux, crossings = seam_step(image, mask, radius, shrink, compensate=False, shrinkage=rule)
        assert crossings[0, 0, row, 32] == 1 and crossings[0, 0, row, 33] == 0
        np.testing.assert_allclose(flux[0, :, row, 32].numpy(), value, rtol=1e-9, atol=1e-15)
    if cast == 0.05 and wobble == 0.2:
        assert expected["james_stein"] == 0.0 and expected["wiener"] != 0.0
    if cast == 0.05 and wobble == 0.04:
        assert abs(expected["james_stein"]) > 0.5 * cast  # a cast above the noise is read


def test_james_stein_leaves_an_edit_without_a_cast_alone_where_wiener_moves_it():
    """Texture at the seam and no cast: the default prior is exactly zero; the Wiener rule (the
    prior before session 10) still moves the edit. With a cast, the default never reads more of it
    than Wiener at the same strength (1 − ν/s ≤ s/(s + ν))."""
    g = torch.Generator().manual_seed(11)
    texture = 0.5 + 0.03 * torch.randn(2, 3, 96, 96, generator=g, dtype=torch.float64)
    mask = _blob_mask(96, 96, seed=2).expand(2, -1, -1, -1)
    js = seam_offset(texture, mask, iterations=0)
    wiener = seam_offset(texture, mask, iterations=0, shrinkage="wiener")
    assert js.abs().max() == 0.0 and wiener.abs().max() > 1e-4
    cast = torch.tensor([0.06, -0.03, 0.02], dtype=torch.float64).view(1, 3, 1, 1)
    edited = texture + cast * mask
    js = seam_offset(edited, mask, iterations=0, shrink=8.0)
    wiener = seam_offset(edited, mask, iterations=0, shrink=8.0, shrinkage="wiener")
    inside = mask.bool().expand_as(js)
    assert (js.abs() <= wiener.abs() + 1e-12).all()  # per window always; here also filled (one uniform cast)
    assert js[inside].abs().mean() > 0.5 * wiener[inside].abs().mean()  # a clear cast is still read
    with pytest.raises(ValueError, match="shrinkage must be one of"):
        seam_offset(edited, mask, shrinkage="soft")


def test_refiner_seam_shrinkage_round_trips_and_old_exports_keep_wiener(tmp_path):
    """The rule and the fill are part of the refiner's config; an export saved before the options
    existed (no ``seam_shrinkage`` or ``seam_cg`` in config.json) loads with the prior it was trained
    with: Wiener, push-pull fill only."""
    import json

    refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True)
    assert refiner.seam_shrinkage == "james_stein" and refiner.seam_cg == 0.25
    refiner.save_pretrained(tmp_path / "new")
    new = CMGANRefiner.from_pretrained(tmp_path / "new")
    assert new.seam_shrinkage == "james_stein" and new.seam_cg == 0.25
    refiner.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["seam_shrinkage"], config["seam_cg"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = CMGANRefiner.from_pretrained(tmp_path / "old")
    assert old.seam_shrinkage == "wiener" and old.seam_cg == 0.0
    g = torch.Generator().manual_seed(4)
    x = 0.5 + 0.03 * torch.randn(1, 3, 48, 48, generator=g)
    m = _blob_mask(48, 48, seed=1).float()
    wiener = seam_offset(x, m, iterations=0, shrinkage="wiener")
    assert (wiener - seam_offset(x, m, iterations=0)).abs().max() > 1e-4  # the two rules differ on this input
    with torch.no_grad():
        assert torch.allclose(old(x, m), (x + wiener).clamp(0, 1), atol=1e-6)
    # a training checkpoint from before the option is exported with the rule it was trained with
    from pixperfect.export import EMA_PREFIX, refiner_from_checkpoint

    ckpt = {"pixperfect": {"refiner_class": "pixperfect.models.refiner.CMGANRefiner", "refiner_config": config},
            "state_dict": {EMA_PREFIX + k: v for k, v in refiner.state_dict().items()}}
    assert refiner_from_checkpoint(tmp_path / "old.ckpt", ckpt=ckpt).seam_shrinkage == "wiener"
    assert refiner_from_checkpoint(tmp_path / "old.ckpt", ckpt=ckpt).seam_cg == 0.0
    ckpt["pixperfect"]["refiner_config"] = dict(refiner.config)  # a checkpoint written now keeps its rule
    assert refiner_from_checkpoint(tmp_path / "new.ckpt", ckpt=ckpt).seam_shrinkage == "james_stein"
    assert refiner_from_checkpoint(tmp_path / "new.ckpt", ckpt=ckpt).seam_cg == 0.25
    with pytest.raises(ValueError, match="seam_shrinkage must be one of"):
        CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True, seam_shrinkage="hard")
    with pytest.raises(ValueError, match="seam_cg is CG iterations per px"):
        CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True, seam_cg=-1)


def test_half_precision_input_gives_the_float32_offset():
    """The shrinkage's squares and its 1e-12 underflow in float16 (a flat image gave 0/0 = NaN): a
    half-precision input is computed in float32 and handed back in its own dtype."""
    g = torch.Generator().manual_seed(8)
    m = _blob_mask(64, 64, seed=3).float().expand(2, -1, -1, -1)
    x = 0.5 + 0.02 * torch.randn(2, 3, 64, 64, generator=g)
    x[0, 0] += 0.05 * m[0, 0]  # a cast on texture
    x[1] = 0.5  # a flat image: every jump, the signal and the noise are exactly 0 (0/0 without the float32 pass)
    full = seam_offset(x, m, iterations=0)
    assert full[1].abs().max() == 0.0
    half = seam_offset(x.half(), m.half(), iterations=0)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert full.abs().max() > 0.01
    torch.testing.assert_close(half.float(), seam_offset(x.half().float(), m, iterations=0), atol=1e-3, rtol=0)


def test_resuming_a_checkpoint_with_another_seam_rule_is_refused_with_the_fix():
    """A training checkpoint saved before ``seam_shrinkage`` existed (Wiener) resumed under today's
    config (James–Stein) would change the prior's output mid-run: ``on_load_checkpoint`` refuses and
    names the override; the same rule, or a refiner without the prior, loads."""
    from pixperfect.losses import RefinerLoss, SpaceLoss
    from pixperfect.training.module import PixPerfectModule

    def module(**kw):
        refiner = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, **kw)
        loss = RefinerLoss({"pixel": SpaceLoss(l1_weight=1.0, lpips_weight=0.0, adv_weight=0.0)})
        return PixPerfectModule(refiner, {}, loss)

    now = module(seam_prior=True)
    saved = now.state_dict()
    old_config = {k: v for k, v in now.refiner.config.items() if k not in ("seam_shrinkage", "seam_cg")}
    old = {"pixperfect": {"refiner_config": old_config}, "state_dict": saved}
    with pytest.raises(ValueError, match="model.refiner.seam_shrinkage=wiener"):
        now.on_load_checkpoint(old)
    with pytest.raises(ValueError, match="model.refiner.seam_cg=0.0"):  # and its fill was push-pull only
        module(seam_prior=True, seam_shrinkage="wiener").on_load_checkpoint(old)
    module(seam_prior=True, seam_shrinkage="wiener", seam_cg=0.0).on_load_checkpoint(old)  # continued as trained
    now.on_load_checkpoint({"pixperfect": {"refiner_config": dict(now.refiner.config)}})  # a checkpoint of today
    module().on_load_checkpoint({"pixperfect": {"refiner_config": {**old_config, "seam_prior": False}}})


def test_cg_fill_follows_a_cast_that_varies_along_the_seam(cbsd68_photos):
    """A cast that changes linearly across the edit (the benchmark's gradient cast): its jump varies
    along the seam, and the push-pull fill smooths it towards its mean. The default CG budget
    (``seam_cg``: 0.25 × the side = 32 iterations at 128²) takes the fill towards the harmonic one,
    which a linear cast is: on real photos it leaves less than 0.8 of push-pull's residual."""
    from conftest import load_photo

    m = torch.zeros(1, 1, 128, 128)
    m[..., 32:96, 24:104] = 1
    ramp = torch.linspace(-1, 1, 128).view(1, 1, 1, 128) * torch.tensor([0.08, 0.04, -0.04]).view(1, 3, 1, 1)
    for path in cbsd68_photos[:4]:
        photo = load_photo(path, 128)[None]
        edited = (photo + ramp * m).clamp(0, 1)

        def residual(iterations):
            fixed = (edited + seam_offset(edited, m, iterations=iterations)).clamp(0, 1)
            return float(((fixed - photo).abs() * m).sum())

        assert cg_iterations(DEFAULT_CG, 128, 128) == 32
        assert residual(32) < 0.8 * residual(0) < 0.8 * float(((edited - photo).abs() * m).sum())


def test_refiner_seam_cg_is_the_fill_it_runs_and_the_pushpull_baseline_is_cg_0():
    """On a gradient cast (where the two fills differ) the untrained refiner returns x + the offset with
    its own CG budget; ``seam_cg=0`` returns the push-pull offset, which the ``seam_offset_pushpull``
    baseline reproduces, while ``seam_offset`` is the default refiner at step 0."""
    g = torch.Generator().manual_seed(11)
    image = 0.4 + 0.1 * torch.rand(1, 3, 64, 64, generator=g)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 12:52, 8:56] = 1
    ramp = torch.linspace(-1, 1, 64).view(1, 1, 1, 64) * torch.tensor([0.2, 0.1, -0.1]).view(1, 3, 1, 1)
    edited = (image + ramp * mask).clamp(0, 1)
    kw = dict(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True)
    with torch.no_grad():
        cg_out = CMGANRefiner(**kw)(edited, mask)
        pp_out = CMGANRefiner(**kw, seam_cg=0.0)(edited, mask)
    assert torch.allclose(cg_out, (edited + seam_offset(edited, mask, iterations=16)).clamp(0, 1), atol=1e-6)
    assert torch.allclose(pp_out, (edited + seam_offset(edited, mask, iterations=0)).clamp(0, 1), atol=1e-6)
    assert (cg_out - pp_out).abs().max() > 1e-3
    assert torch.allclose(BASELINES["seam_offset"](edited, mask, edited), cg_out, atol=1e-6)
    assert torch.allclose(BASELINES["seam_offset_pushpull"](edited, mask, edited), pp_out, atol=1e-6)


def test_a_samples_fill_is_the_same_alone_or_in_a_batch():
    """CG stops each (sample, channel) at its own convergence, so a batch-mate that converges later
    (a large edit next to a tiny one) does not keep iterating the other: batched equals alone."""
    g = torch.Generator().manual_seed(5)
    image = (0.4 + 0.2 * torch.rand(2, 3, 64, 64, generator=g))
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 20:44, 20:47] = 1  # converges at about iteration 78
    mask[1, :, 4:60, 6:58] = 1    # at about 167: the old loop kept iterating sample 0 until then
    image = image + torch.tensor([0.1, -0.05, 0.05]).view(1, 3, 1, 1) * mask
    both = seam_offset(image, mask, iterations=200)
    for i in range(2):
        alone = seam_offset(image[i:i + 1], mask[i:i + 1], iterations=200)
        assert torch.equal(both[i:i + 1], alone), float((both[i:i + 1] - alone).abs().max())


def _edit_with_jumps_along_the_seam(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat grey photo whose right half (the mask) is offset by ``values[row]``: the jump across
    the straight seam at every row is −values[row] (the edit side is the mask side)."""
    n, h = values.shape[0], values.shape[-1]
    image = torch.full((n, 3, h, h), 0.5, dtype=torch.float64)
    mask = torch.zeros(n, 1, h, h, dtype=torch.float64)
    mask[..., h // 2:] = 1.0
    return image + values.view(n, 1, h, 1) * mask, mask


def _jump_sums(image, mask):
    from pixperfect.models.seam_offset import seam_step
    return seam_step(image, mask, radius=0, shrink=0.0, compensate=True)


def test_correlation_inflation_is_one_for_independent_jumps_and_the_block_size_for_jumps_that_move_together():
    """Batch means: jumps drawn per row leave the standard error as it is (inflation ≈ 1); jumps
    constant over runs of 8 rows (a JPEG or latent grid) make it about the crossings per block
    (2·4+1 = 9 at block 4) times larger."""
    from pixperfect.models.seam_offset import correlation_inflation
    g = torch.Generator().manual_seed(5)
    h, seam = 96, slice(24, 72)
    independent = 0.02 * torch.randn(8, h, generator=g, dtype=torch.float64)
    runs = (0.02 * torch.randn(8, h // 8, generator=g, dtype=torch.float64)).repeat_interleave(8, dim=1)
    ratios = {}
    for name, values in (("independent", independent), ("runs", runs)):
        flux, crossings = _jump_sums(*_edit_with_jumps_along_the_seam(values))
        inflation = correlation_inflation(flux, crossings, radius=16, block=4)
        ratios[name] = inflation[..., seam, h // 2].median().item()
    assert 1.0 <= ratios["independent"] < 1.6
    assert 5.0 < ratios["runs"] < 12.0


def test_block_turns_grid_correlated_texture_down_and_keeps_a_cast():
    """Jumps that move together over 8-row runs, with no cast beneath: the default rule (independent
    crossings) moves the edit over 10× more than jumps of the same spread drawn per row, because it
    reads their window mean as a cast; ``block=4`` takes less than half of that. A clear cast on top of
    the same texture is still read (within 0.015 of it at the centre of the seam)."""
    g = torch.Generator().manual_seed(3)
    h = 96
    runs = (0.02 * torch.randn(16, h // 8, generator=g, dtype=torch.float64)).repeat_interleave(8, dim=1)
    independent = 0.02 * torch.randn(16, h, generator=g, dtype=torch.float64)
    texture, mask = _edit_with_jumps_along_the_seam(runs)
    default = seam_offset(texture, mask, iterations=0).abs().mean()
    assert default > 10 * seam_offset(*_edit_with_jumps_along_the_seam(independent), iterations=0).abs().mean()
    assert seam_offset(texture, mask, iterations=0, block=4).abs().mean() < 0.5 * default
    cast, _ = _edit_with_jumps_along_the_seam(runs[:4] + 0.1)
    read = -seam_offset(cast, mask[:4], iterations=0, block=4)[..., h // 2, h // 2 + 4]
    assert ((read - 0.1).abs() < 0.015).all()
    with pytest.raises(ValueError, match="block must be a whole number"):
        seam_offset(cast, mask[:4], block=-1)
