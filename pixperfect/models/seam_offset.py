"""The seam offset: the colour step across the mask boundary, spread smoothly over the edit.

A colour cast shows as a step between the edit's pixels on the mask boundary and their background
neighbours; content the edit got right (a clean edit, a whole-image round trip) shows no step
there. The field is the membrane of gradient-domain blending (Pérez et al., "Poisson image
editing", 2003) with no guidance across the boundary: the harmonic function on the mask whose
boundary flux is the step. ``x + field`` keeps the edit's own gradients and meets the background
along the seam — what Poisson blending would give from the edit alone, without the original.

Three changes make it safer as a refiner input than the textbook membrane, chosen on a validation
set of CBSD68 photos (``make_set … --seed 1``) and reported on the demo's held-out set (docs/seam_prior.md,
"Choosing the estimator on a validation set"): the step is measured as a *jump* (the difference across the seam less what the
image's gradient on both sides predicts, so shading and edges crossing the seam are not mistaken
for a cast); it is averaged along the boundary in a window of half the image side (casts vary
slowly); and it is shrunk towards zero where it is small against its own spread there
(positive-part James–Stein: a jump within the noise becomes exactly zero), so texture and noise at
the seam, which average out, do not move the edit, and a cast, which does not average out, does.

The fill is push-pull interpolation (Gortler et al., 1996) of the step; with ``iterations`` it is
refined by batched conjugate gradients on the masked 5-point Laplacian to the exact membrane (the
``membrane`` baseline). The refiner runs a short CG budget on its shrunk jump (``seam_cg``: 0.25
iterations per px of the longer side), which follows a cast that varies along the seam where
push-pull alone smooths it towards its mean (docs/seam_prior.md, "The fill"). Hand-written because
no library in the stack solves a batched masked Poisson problem in torch (OpenCV's
``seamlessClone`` is per image, on CPU, and reads the original under the mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixperfect.utils import check_image_and_mask

_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., i, j] = x[..., i + dy, j + dx]``, zero where that is outside the image."""
    k = max(abs(dy), abs(dx))
    x = F.pad(x, (k, k, k, k))
    h, w = x.shape[-2] - 2 * k, x.shape[-1] - 2 * k
    return x[..., k + dy : k + dy + h, k + dx : k + dx + w]


def _box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum over a (2r+1)² window (zero outside the image), from running sums along each axis: the
    cost does not grow with the window (which is half the image side). Accumulated in float32 at
    least: a half-precision running sum over a row would lose the window's difference."""
    dtype = x.dtype
    x = x.to(torch.promote_types(dtype, torch.float32))
    for dim in (-1, -2):
        n = x.shape[dim]
        running = F.pad(torch.cumsum(x, dim), (1, 0) if dim == -1 else (0, 0, 1, 0))
        i = torch.arange(n, device=x.device)
        x = running.index_select(dim, (i + radius + 1).clamp(max=n)) - running.index_select(dim, (i - radius).clamp(min=0))
    return x.to(dtype)


def push_pull_fill(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill ``values`` (N×C×H×W) everywhere from where ``weights`` (N×1×H×W, ≥ 0) are non-zero:
    known pixels keep their value in proportion to their weight (capped at 1), holes take the
    smooth estimate of the next coarser level. All-zero weights give zeros."""
    eps = 1e-6
    sums, mass = [values * weights], [weights]
    while min(sums[-1].shape[-2:]) > 1:
        sums.append(F.avg_pool2d(sums[-1], 2, ceil_mode=True))
        mass.append(F.avg_pool2d(mass[-1], 2, ceil_mode=True))
    estimate = sums[-1].mean(dim=(2, 3), keepdim=True) / mass[-1].mean(dim=(2, 3), keepdim=True).clamp_min(eps)
    for s, w in zip(reversed(sums), reversed(mass)):
        coarse = F.interpolate(estimate, size=s.shape[-2:], mode="bilinear", align_corners=False)
        confidence = w.clamp(max=1.0)
        estimate = confidence * (s / w.clamp_min(eps)) + (1.0 - confidence) * coarse
    return estimate


def _masked_laplacian(h: torch.Tensor, m: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """(A h) on mask pixels: degree·h − Σ of the mask neighbours' h (background neighbours are the
    Dirichlet side, already in the right-hand side)."""
    hm = h * m
    out = degree * hm
    for dy, dx in _SHIFTS:
        out = out - _shift(hm, dy, dx)
    return out * m


def _jump(image: torch.Tensor, m: torch.Tensor, inside: torch.Tensor, dy: int, dx: int, gap: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(jump, valid) across the crossing from mask pixel q to its background neighbour in direction d,
    read ``gap`` px out and ``gap − 1`` px in: ``P − Q`` less the linear prediction from the slopes
    one gap further out and in, ``(2g−1)/2g · ((P₂ − P) + (Q − Q₂))``. Zero on a linear ramp; a
    feathered step of half-width < gap is read whole. ``valid`` where P, P₂ are background and Q, Q₂
    are in the mask."""
    def at(x, k):  # x at k px along d from the mask pixel (k < 0: into the mask)
        return _shift(x, k * dy, k * dx)

    outer, outer2, inner, inner2 = gap, 2 * gap, -(gap - 1), -(2 * gap - 1)
    background = inside * (1.0 - m)
    valid = at(background, outer) * at(background, outer2) * at(m, inner) * at(m, inner2)
    c = (2 * gap - 1) / (2 * gap)
    jump = at(image, outer) - at(image, inner) - c * (at(image, outer2) - at(image, outer)) - c * (at(image, inner) - at(image, inner2))
    return jump, valid


SHRINKAGES = ("james_stein", "wiener")
DEFAULT_CG = 0.25  # the prior's CG iterations per px of the longer side (64 at 256²); docs/seam_prior.md, "The fill"
DEFAULT_SHRINK = {"james_stein": 6.0, "wiener": 8.0}  # each chosen on the validation set (docs/seam_prior.md)


def correlation_inflation(step_sum: torch.Tensor, crossings: torch.Tensor, radius: int, block: int) -> torch.Tensor:
    """N×1×H×W: how many times the variance of a window's mean jump exceeds what independent
    crossings give, by batch means. Jumps at neighbouring crossings move together where the error
    has a grid (JPEG's 8-px cells, an autoencoder's latent cells), so a standard error that counts
    every crossing as independent reads their window mean as a cast. The ratio compares the spread
    of block means (radius ``block``) with that of single crossings, both about a local mean of
    radius 4·``block`` (so a cast that varies slowly along the seam is not counted as noise), scaled
    so that independent jumps give about 1: (Σ(b − l)²·n_b) / (Σ(p − l)²·(1 − n_b/n_l)) over the
    window of ``radius``; jumps constant over each block give about its crossings n_b. Clamped to at
    least 1: it only ever adds noise to the independent-crossings rule. Float32 or wider (as
    ``seam_offset`` computes)."""
    count = _box_sum(crossings, radius).clamp_min(1.0)
    per_pixel = step_sum / crossings.clamp_min(1.0)
    n_block, n_local = _box_sum(crossings, block), _box_sum(crossings, 4 * block)
    block_mean = _box_sum(step_sum, block) / n_block.clamp_min(1.0)
    local_mean = _box_sum(step_sum, 4 * block) / n_local.clamp_min(1.0)
    between = _box_sum((block_mean - local_mean).square() * crossings, radius).sum(dim=1, keepdim=True)
    within = _box_sum((per_pixel - local_mean).square() * crossings, radius).sum(dim=1, keepdim=True)
    n_b = _box_sum(n_block * crossings, radius) / count  # crossings per block, averaged over the window
    n_l = _box_sum(n_local * crossings, radius) / count
    expected = within * (1.0 - n_b / n_l.clamp_min(1.0)).clamp_min(0.1)  # what independent jumps give, × n_b
    return (between * n_b / (expected + 1e-12)).clamp_min(1.0)


def seam_step(image: torch.Tensor, mask: torch.Tensor, radius: int, shrink: float,
              compensate: bool = False, gap: int = 1, shrinkage: str = "james_stein",
              block: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(flux, crossings): per mask pixel, the sum over its background 4-neighbours p of the
    smoothed and shrunk step ``image[p] − image[q]``, and the number of such neighbours.

    ``compensate`` measures the *jump* instead: the step less what the image's own gradient on
    both sides predicts, ``1.5·p − 0.5·p₂ − 1.5·q + 0.5·q₂`` with p₂, q₂ one more pixel out and in
    (zero on any linear ramp; the plain step where the mask is too thin for q₂ or p₂). A cast is a
    jump; an edge or shading crossing the seam is not. ``gap`` > 1 reads the jump between pixels
    ``gap`` px out and ``gap − 1`` in (see ``_jump``), so a feathered seam, a ramp a few pixels wide
    that the one-pixel jump compensates away, is read whole; where the mask or the background is too
    thin for it, the one-pixel jump is used.

    ``shrinkage`` turns the window's mean jump μ down against the noise ν of that mean (``shrink``
    times its squared standard error): ``"james_stein"`` multiplies it by max(0, 1 − ν/|μ|²), so a
    jump within the noise is exactly zero and an edit with no cast is left as it is; ``"wiener"``
    by |μ|²/(|μ|² + ν), which is never zero (the estimator before session 10). ``block`` > 0 multiplies
    ν by ``correlation_inflation`` at that block radius (0: every crossing independent, the default;
    measured in docs/seam_prior.md, "Jumps that move together"); like the shrinkage it needs the
    window, ``radius`` > 0."""
    if shrinkage not in SHRINKAGES:
        raise ValueError(f"seam_step: shrinkage must be one of {SHRINKAGES}; got {shrinkage!r}")
    m = (mask > 0.5).to(image.dtype)
    inside = torch.ones_like(m)
    step_sum = torch.zeros_like(image)
    crossings = torch.zeros_like(m)
    for dy, dx in _SHIFTS:
        crossing = m * _shift(inside, dy, dx) * (1.0 - _shift(m, dy, dx))  # neighbour exists and is background
        step = _shift(image, dy, dx) - image
        if compensate:
            jump, deep = _jump(image, m, inside, dy, dx, 1)  # q₂ = q − d in the mask, p₂ = q + 2d background
            step = deep * jump + (1.0 - deep) * step
            if gap > 1:
                jump, deep = _jump(image, m, inside, dy, dx, gap)
                step = deep * jump + (1.0 - deep) * step
        step_sum = step_sum + crossing * step
        crossings = crossings + crossing
    if radius > 0:  # average the step along the boundary; shrink it where it is noise
        count = _box_sum(crossings, radius)
        per_pixel = step_sum / crossings.clamp_min(1.0)
        mean = _box_sum(step_sum, radius) / count.clamp_min(1.0)
        second = _box_sum(per_pixel.square() * crossings, radius) / count.clamp_min(1.0)
        variance = (second - mean.square()).clamp_min(0.0).sum(dim=1, keepdim=True)
        signal = mean.square().sum(dim=1, keepdim=True)
        # standard error of the mean over the window, with the crossings of a straight boundary
        noise = shrink * variance / (2 * radius + 1)
        if block > 0:
            noise = noise * correlation_inflation(step_sum, crossings, radius, block)
        if shrinkage == "james_stein":  # positive part: a jump within the noise is no jump
            mean = mean * (1.0 - noise / (signal + 1e-12)).clamp_min(0.0)
        else:
            mean = mean * signal / (signal + noise + 1e-12)
        step_sum = mean * crossings
    return step_sum, crossings


def cg_iterations(fraction: float, height: int, width: int) -> int:
    """The conjugate-gradient budget of the prior's fill: ``fraction`` of the longer side, so the
    fill reaches as far, relative to the image, at every resolution (0: the push-pull start only)."""
    return round(fraction * max(height, width))


def seam_offset(image: torch.Tensor, mask: torch.Tensor, ring: int | None = None, shrink: float | None = None,
                iterations: int | None = None, compensate: bool = True, gap: int = 1,
                shrinkage: str = "james_stein", block: int = 0) -> torch.Tensor:
    """N×3×H×W additive correction, zero outside the mask: the membrane whose boundary flux is the
    (gradient-compensated, smoothed, shrunk) colour step from the edit to the background.

    ``ring`` sets the smoothing window along the boundary, 4·ring+1 px with ``ring = max(2, side //
    8)`` by default (half the image side: casts vary slowly; 0 = raw step); ``shrink`` the
    strength of the shrinkage towards zero (0 = none; default 6 for ``"james_stein"``, 8 for
    ``"wiener"``) and ``shrinkage`` its rule (see ``seam_step``; ``"wiener"`` is the estimator
    before session 10); ``compensate`` the jump rather than the raw step and ``gap``
    how far from the seam it is read and ``block`` the radius in px over which the noise of the jump
    is taken to be correlated (see ``seam_step``; 0 = independent); ``iterations`` the conjugate-gradient budget (default 2·max(H, W); 0 = the
    push-pull start only). ``ring=0, shrink=0, compensate=False`` with iterations is the exact
    membrane. A mask with no boundary gives zeros.
    """
    check_image_and_mask(image, mask)
    if shrinkage not in SHRINKAGES:
        raise ValueError(f"seam_offset: shrinkage must be one of {SHRINKAGES}; got {shrinkage!r}")
    shrink = DEFAULT_SHRINK[shrinkage] if shrink is None else shrink
    if (ring is not None and ring < 0) or shrink < 0 or (iterations is not None and iterations < 0):
        raise ValueError(f"seam_offset: ring, shrink and iterations must be ≥ 0; got {ring}, {shrink}, {iterations}")
    if int(gap) != gap or gap < 1:
        raise ValueError(f"seam_offset: gap must be a whole number of pixels ≥ 1; got {gap}")
    if int(block) != block or block < 0:
        raise ValueError(f"seam_offset: block must be a whole number of pixels ≥ 0 (0 = independent crossings); got {block}")
    out_dtype = image.dtype
    image = image.to(torch.promote_types(image.dtype, torch.float32))  # half precision: 1e-12 and squares underflow
    h, w = image.shape[-2:]
    r = max(2, min(h, w) // 8) if ring is None else ring
    m = (mask > 0.5).to(image.dtype)
    flux, crossings = seam_step(image, m, 2 * r if r else 0, shrink, compensate, int(gap), shrinkage, int(block))
    # start: the per-pixel step filled into the interior (exact for a uniform cast)
    x = push_pull_fill(flux / crossings.clamp_min(1.0), crossings.clamp(max=1.0)) * m
    ones = torch.ones_like(m)
    degree = sum(_shift(ones, dy, dx) for dy, dx in _SHIFTS) * m
    n_iter = 2 * max(h, w) if iterations is None else iterations
    if n_iter > 0:
        x = _conjugate_gradient(lambda v: _masked_laplacian(v, m, degree), flux * m, x, n_iter)
    return (x * m).to(out_dtype)


@torch.compiler.disable  # a data-dependent loop: torch.compile would unroll it and break the graph at each stop check
def _conjugate_gradient(apply_a, b: torch.Tensor, x: torch.Tensor, iterations: int, tol: float = 1e-7) -> torch.Tensor:
    """Batched CG for A x = b per (sample, channel). Each (sample, channel) freezes at the first
    iteration its residual is below ``tol`` times its right-hand side's norm, so a sample's fill is
    the same alone or in any batch (bit for bit on CPU; elsewhere up to how the per-sample sums
    round); the loop ends early once all have frozen."""
    dims = (2, 3)
    r = b - apply_a(x)
    p = r.clone()
    rr = (r * r).sum(dims, keepdim=True)
    stop = (tol**2) * (b * b).sum(dims, keepdim=True).clamp_min(1e-20)
    active = rr > stop
    for i in range(iterations):
        ap = apply_a(p)
        alpha = torch.where(active, rr / (p * ap).sum(dims, keepdim=True).clamp_min(1e-30), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum(dims, keepdim=True)
        p = torch.where(active, r + (rr_new / rr.clamp_min(1e-30)) * p, p)
        rr = rr_new
        active = active & (rr > stop)
        if i % 16 == 15 and not bool(active.any()):  # (a host sync: not every iteration)
            break
    return x
