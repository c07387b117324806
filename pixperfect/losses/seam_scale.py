"""Direct supervision of the seam prior's scale: the scale that would have fit the target best.

With ``seam_prior`` the refiner returns ``x + s·offset + Δ`` and predicts the per-pixel scale
``s = 1 + g``. The pixel L1 reaches ``s`` only through ``Σ offset·sign(pred − target)``: texture on
the target that no refiner can know (noise, JPEG blocks, the scene itself under a blurred edit)
flips those signs pixel by pixel, and the few-percent trend that says "this offset over-reads the
cast" or "this edit had no cast" is lost in them (docs/learning_diagnostics.md, "At GPU scale":
192k samples do not move the scale). The best scale has a closed form: the least-squares
projection of the input's error ``x_gt − x_gen`` onto the offset over the edit. The offset is
smooth, so texture is nearly orthogonal to it and averages out of the projection; a cast is not,
and an edit without one (clean, texture-only, a re-inpainted band) projects to about 0, which
teaches the refiner where *not* to correct.

Not in the paper (its refiner has no seam prior); measured in docs/learning_diagnostics.md ("Supervising the prior's
scale"): it reaches the scale, and does not beat the best constant scale on held-out photos.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeamScaleLoss(nn.Module):
    """``weight · Σ_edit |(s − s*)·offset|^p / Σ_edit 1`` (mean over channels); ``(loss, logs)``.

    With ``power`` 1 the term is the L1 between the prior's contribution ``s·offset`` and the
    best-fitting one ``s*·offset`` (image units, like the pixel L1); with 2 it is their squared
    error, whose gradient shrinks near the optimum (the L1's has a constant size, so a batch's
    optimum is a weighted median that jumps with the batch). Pixels with no offset cost nothing,
    whatever their scale.

    Args:
        weight: the term's weight (0 = off; compare with the pixel space's ``l1_weight``).
        window: 0 = one best scale per image (what ``prior_sweep --oracle-gain`` bounds);
            an odd k ≥ 1 = a best scale per pixel over the k×k window centred on it, for casts the
            prior reads more accurately in some parts of the edit than in others.
        power: 2 (squared error; the L1 form swung the scale to 3 within 400 steps,
            docs/learning_diagnostics.md) or 1 (L1).
        min_scale, max_scale: the best scale is clipped to this range (the oracle bound's).
        eps: added to the projection's denominator (the squared offset summed over the image, or
            averaged over the window), so where there is no offset the best scale is ≈ 0 (it costs
            nothing there anyway).
        relative_to: ``"input"`` fits s* to the input's error ``x_gt − x_gen``; ``"refined"`` to what
            the rest of the refiner left, ``x_gt − (x_gen + Δ)`` with Δ the head's own correction
            (``RefinerParts.delta``), so the prior and the head do not both correct the same cast.
    """

    def __init__(self, weight: float = 0.0, window: int = 0, power: int = 2, min_scale: float = -0.5,
                 max_scale: float = 2.0, eps: float = 1e-6, relative_to: str = "input"):
        super().__init__()
        if weight < 0:
            raise ValueError(f"SeamScaleLoss: weight must be ≥ 0; got {weight}")
        if int(window) != window or window < 0 or (window and window % 2 == 0):
            raise ValueError(f"SeamScaleLoss: window is 0 (per image) or an odd number of pixels (centred); got {window}")
        if power not in (1, 2):
            raise ValueError(f"SeamScaleLoss: power is 1 (L1) or 2 (squared error); got {power}")
        if not min_scale < max_scale:
            raise ValueError(f"SeamScaleLoss: min_scale must be < max_scale; got {min_scale}, {max_scale}")
        if relative_to not in ("input", "refined"):
            raise ValueError(f"SeamScaleLoss: relative_to is 'input' or 'refined'; got {relative_to!r}")
        self.relative_to = relative_to
        self.weight = float(weight)
        self.window = int(window)
        self.power = int(power)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.eps = float(eps)

    @torch.no_grad()
    def target_scale(self, offset: torch.Tensor, x_gen: torch.Tensor, x_gt: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
        """The least-squares scale s* of the offset against the input's error over the edit:
        N×1×1×1 per image (``window`` 0), else N×1×H×W per window. float32 throughout."""
        offset, m = offset.float(), mask.float()
        num = m * (offset * (x_gt.float() - x_gen.float())).sum(dim=1, keepdim=True)
        den = m * offset.square().sum(dim=1, keepdim=True)
        if self.window:  # window means (zeros outside the image: the divisor cancels in num/den)
            k = self.window
            num = F.avg_pool2d(num, k, stride=1, padding=k // 2, count_include_pad=True)
            den = F.avg_pool2d(den, k, stride=1, padding=k // 2, count_include_pad=True)
            eps = self.eps / k**2
        else:
            num, den = num.sum(dim=(2, 3), keepdim=True), den.sum(dim=(2, 3), keepdim=True)
            eps = self.eps
        return (num / (den + eps)).clamp(self.min_scale, self.max_scale)

    def forward(self, scale: torch.Tensor, offset: torch.Tensor, x_gen: torch.Tensor, x_gt: torch.Tensor,
                mask: torch.Tensor, delta: torch.Tensor | None = None):
        """``delta``: the head's own correction (``RefinerParts.delta``), needed with
        ``relative_to="refined"``."""
        base = x_gen
        if self.relative_to == "refined":
            if delta is None:
                raise ValueError("SeamScaleLoss(relative_to='refined') needs the head's correction (RefinerParts.delta)")
            base = x_gen + delta  # the input plus everything but the prior (target_scale needs no grad)
        target = self.target_scale(offset, base, x_gt, mask)
        m = mask.float()
        area = m.sum().clamp_min(1.0)
        err = ((scale.float() - target) * offset.float()).abs().pow(self.power).mean(dim=1, keepdim=True)
        loss = (m * err).sum() / area
        logs = {"seam_scale_loss": loss.detach(), "seam_scale": (m * scale.detach().float()).sum() / area,
                "seam_scale_target": (m * target.expand_as(m)).sum() / area}
        return self.weight * loss, logs
