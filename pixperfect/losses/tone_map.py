"""Per-sample polynomial colour maps fitted by least squares.

Written by hand: no library fits a *batched*, per-sample polynomial colour transform with a
differentiable application. The fit runs in float64 on a Legendre basis (bounded by 1 on
[-1, 1], far better conditioned than raw powers at degree 6–10) as the pseudoinverse solution
(computed from a thin QR, ``least_squares``); the application runs in the input dtype, so gradients
flow to the mapped image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def legendre_basis(x: torch.Tensor, degree: int) -> list[torch.Tensor]:
    """[P_0(x), …, P_degree(x)] by Bonnet's recurrence; x is expected in about [-1, 1]."""
    basis = [torch.ones_like(x), x]
    for n in range(1, degree):
        basis.append(((2 * n + 1) * x * basis[n] - n * basis[n - 1]) / (n + 1))
    return basis[: degree + 1]


def monomial_exponents(degree: int, cross_channel: bool) -> list[tuple[int, int, int]]:
    """Exponent triples (i, j, k) of P_i(r)·P_j(g)·P_k(b) used as features.

    Per-channel: the constant plus P_1..P_d of each channel alone (1 + 3d features).
    Cross-channel: every product with i + j + k ≤ d (C(d+3, 3) features).
    """
    if cross_channel:
        return [(i, j, k) for i in range(degree + 1) for j in range(degree + 1 - i) for k in range(degree + 1 - i - j)]
    exps = [(0, 0, 0)]
    for c in range(3):
        for n in range(1, degree + 1):
            e = [0, 0, 0]
            e[c] = n
            exps.append(tuple(e))
    return exps


def _features(x: torch.Tensor, exponents, degree: int) -> torch.Tensor:
    """x: ...×3 in [0, 1] → ...×F Legendre features of 2x − 1."""
    per_channel = [legendre_basis(x[..., c] * 2 - 1, degree) for c in range(3)]
    return torch.stack([per_channel[0][i] * per_channel[1][j] * per_channel[2][k] for i, j, k in exponents], dim=-1)


def least_squares(a: torch.Tensor, y: torch.Tensor, rcond: float = 1e-10) -> torch.Tensor:
    """``pinv(a, rtol=rcond) @ y`` per sample (a: N×P×F, y: N×P×K → N×F×K): the minimum-norm
    least-squares solution, singular values below ``rcond·σ_max`` dropped (a flat image's features
    are collinear, so the rank truncation matters).

    Computed as ``pinv(R) @ Qᵀy`` from the thin QR ``a = QR``: Q has orthonormal columns, so
    ``pinv(a) = pinv(R) Qᵀ`` and R has a's singular values, and the SVD is of an F×F matrix instead
    of P×F. Same fitted values to 1e-7 and 1.2–1.8× faster on a CPU
    (``python -m evaluation.bench losses``)."""
    q, r = torch.linalg.qr(a)
    return torch.linalg.pinv(r, rtol=rcond) @ (q.transpose(-2, -1) @ y)


def sample_pixels(mask: torch.Tensor | None, n: int, height: int, width: int, max_pixels: int, dilate_px: int,
                  generator: torch.Generator | None, device) -> torch.Tensor:
    """N×P flat pixel indices, a seeded sample without replacement: half inside the dilated mask,
    half outside (a side with too few pixels is topped up from the other)."""
    total = height * width
    keys = torch.rand(n, total, generator=generator, device=device)
    if mask is None:
        return keys.topk(min(max_pixels, total), dim=1, largest=False).indices
    m = (mask > 0.5).float()
    if dilate_px > 0:
        m = F.max_pool2d(m, 2 * dilate_px + 1, stride=1, padding=dilate_px)
    inside = m.flatten(1) > 0.5
    half = min(max_pixels // 2, total)
    rest = min(max_pixels - max_pixels // 2, total)
    # Smallest keys first; +2 pushes the other side's pixels behind every pixel of this side.
    idx_in = torch.where(inside, keys, keys + 2).topk(half, dim=1, largest=False).indices
    idx_out = torch.where(inside, keys + 2, keys).topk(rest, dim=1, largest=False).indices
    return torch.cat([idx_in, idx_out], dim=1)


@dataclass
class PolynomialToneMap:
    """A batch of per-sample colour maps ``f_n: R³ → R³``, ``f_n(x) = Σ_F W[n, F, :] · φ_F(x)``.

    Build with ``PolynomialToneMap.fit``; call on N×3×H×W images (the same N). ``indices`` are the
    pixels the fit used, kept so a refit (e.g. with gradients) can reuse the same sample.
    """

    coefficients: torch.Tensor  # N×F×3, float64
    degree: int
    cross_channel: bool
    indices: torch.Tensor | None = None
    exponents: list = field(default_factory=list)

    @classmethod
    def fit(cls, source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, degree: int = 6,
            cross_channel: bool = False, max_pixels: int = 8192, dilate_px: int = 8,
            generator: torch.Generator | None = None, indices: torch.Tensor | None = None,
            rcond: float = 1e-10) -> "PolynomialToneMap":
        """Least-squares fit of ``target ≈ f(source)`` per sample.

        Args:
            source, target: N×3×H×W (source in about [0, 1]).
            mask: N×1×H×W; when given, pixels are sampled half inside, half outside the mask
                dilated by ``dilate_px`` so both the edit and its surroundings constrain ``f``.
            max_pixels: pixels per sample used for the fit (caps the cost at any resolution).
            indices: reuse a previous fit's pixel sample (N×P flat indices).

        When ``source`` requires grad the solve is differentiable: it then uses the normal
        equations with a tiny ridge, ``(AᵀA + λI)⁻¹Aᵀy`` (same solution for a full-rank basis),
        because the pseudoinverse's backward builds P×P matrices per sample (measured: the
        demo's step went from ~1 s to tens of seconds).
        """
        if source.shape != target.shape or source.ndim != 4 or source.shape[1] != 3:
            raise ValueError(f"source and target must both be N×3×H×W; got {tuple(source.shape)}, {tuple(target.shape)}")
        if degree < 1:
            raise ValueError(f"degree must be >= 1; got {degree}")
        n, _, h, w = source.shape
        exponents = monomial_exponents(degree, cross_channel)
        if indices is None:
            indices = sample_pixels(mask, n, h, w, max_pixels, dilate_px, generator, source.device)
        gather = indices[:, None, :].expand(n, 3, indices.shape[1])
        src = source.flatten(2).gather(2, gather).transpose(1, 2).double()  # N×P×3
        tgt = target.flatten(2).gather(2, gather).transpose(1, 2).double()
        with torch.autocast(device_type=source.device.type, enabled=False):
            a = _features(src, exponents, degree)  # N×P×F
            if a.requires_grad or tgt.requires_grad:
                gram = a.transpose(1, 2) @ a
                ridge = rcond * gram.diagonal(dim1=1, dim2=2).mean(dim=1)[:, None, None].clamp_min(1e-12)
                eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
                coefficients = torch.linalg.solve(gram + ridge * eye, a.transpose(1, 2) @ tgt)
            else:
                coefficients = least_squares(a, tgt, rcond)  # N×F×3
        return cls(coefficients, degree, cross_channel, indices, exponents)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[0] != self.coefficients.shape[0]:
            raise ValueError(f"expected N×3×H×W with N={self.coefficients.shape[0]}; got {tuple(image.shape)}")
        x = image.float() if image.dtype in (torch.float16, torch.bfloat16) else image
        w = self.coefficients.to(x.dtype)
        per_channel = [legendre_basis(x[:, c] * 2 - 1, self.degree) for c in range(3)]
        out = None
        for f, (i, j, k) in enumerate(self.exponents):
            phi = per_channel[0][i] * per_channel[1][j] * per_channel[2][k]  # N×H×W
            term = w[:, f, :, None, None] * phi[:, None]
            out = term if out is None else out + term
        return out

    def detach(self) -> "PolynomialToneMap":
        return PolynomialToneMap(self.coefficients.detach(), self.degree, self.cross_channel, self.indices,
                                 self.exponents)
