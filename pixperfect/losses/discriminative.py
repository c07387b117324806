"""The discriminative pixel space (the paper's loss contribution).

Per sample, draw β ~ U[β_min, β_max] and build the amplified target
``y_amp = x_gt + β (x_pred − x_gt)``; fit a polynomial colour map ``f: x_pred → y_amp``; compare
``f(x_pred)`` with ``f(x_gt)``. Where the prediction's colours deviate systematically from the
ground truth (a colour cast inside the edit), ``f`` learns to blow that deviation up by ~β while
mapping correct colours to themselves, so L1/LPIPS/D see discrepancies a plain pixel loss
averages away.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pixperfect.losses.tone_map import PolynomialToneMap


class ToneMappedSpace:
    """A fitted map with the normalisation LPIPS and the discriminator need.

    ``to_valid_range`` rescales each sample and channel by the range of ``f(x_gt)`` (fixed at fit
    time, detached) and clamps to [0, 1], so both images go through the same affine map.
    """

    def __init__(self, tone_map: PolynomialToneMap, beta: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
        self.tone_map = tone_map
        self.beta = beta
        self.lo, self.hi = lo, hi

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.tone_map(image)

    def to_valid_range(self, image: torch.Tensor) -> torch.Tensor:
        scale = (self.hi - self.lo).clamp_min(1e-3)
        return ((image - self.lo.to(image.dtype)) / scale.to(image.dtype)).clamp(0.0, 1.0)


class DiscriminativeSpace(nn.Module):
    """Fits a ``ToneMappedSpace`` per step.

    Args:
        beta: [β_min, β_max] of the amplification (paper: [20, 40]).
        degree: polynomial degree (paper: 6); ``cross_channel`` adds mixed monomials.
        max_pixels: pixels per sample in the fit; ``dilate_px``: the mask dilation that defines
            "inside" when sampling.
        detach_coefficients: True (default) treats ``f`` as a fixed, per-step lens on the
            images; False lets gradients flow through the least-squares fit as well (see the
            README's note on the measured difference).
    """

    def __init__(self, beta: Sequence[float] = (20.0, 40.0), degree: int = 6, cross_channel: bool = False,
                 max_pixels: int = 8192, dilate_px: int = 8, detach_coefficients: bool = True):
        super().__init__()
        if not 0 < beta[0] <= beta[1]:
            raise ValueError(f"beta must be a range 0 < min <= max; got {list(beta)}")
        self.beta = (float(beta[0]), float(beta[1]))
        self.degree = degree
        self.cross_channel = cross_channel
        self.max_pixels = max_pixels
        self.dilate_px = dilate_px
        self.detach_coefficients = detach_coefficients

    def _fit(self, x_pred, x_gt, mask, beta, generator=None, indices=None) -> ToneMappedSpace:
        y_amp = x_gt + beta[:, None, None, None].to(x_gt.dtype) * (x_pred - x_gt)
        tone_map = PolynomialToneMap.fit(x_pred, y_amp, mask, self.degree, self.cross_channel, self.max_pixels,
                                         self.dilate_px, generator=generator, indices=indices)
        with torch.no_grad():
            f_gt = tone_map.detach()(x_gt)
            lo, hi = f_gt.amin(dim=(2, 3), keepdim=True), f_gt.amax(dim=(2, 3), keepdim=True)
        return ToneMappedSpace(tone_map, beta, lo, hi)

    def fit(self, x_pred: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor,
            generator: torch.Generator | None = None) -> ToneMappedSpace:
        n = x_pred.shape[0]
        u = torch.rand(n, generator=generator, device=x_pred.device, dtype=torch.float64)
        beta = self.beta[0] + (self.beta[1] - self.beta[0]) * u
        return self._fit(x_pred.detach(), x_gt, mask, beta, generator)

    def refit_with_grad(self, fitted: ToneMappedSpace, x_pred: torch.Tensor, x_gt: torch.Tensor,
                        mask: torch.Tensor) -> ToneMappedSpace:
        """The same fit (same β, same pixels) but differentiable w.r.t. ``x_pred`` through the LS solve."""
        return self._fit(x_pred, x_gt, mask, fitted.beta, indices=fitted.tone_map.indices)
