"""Inference-time pooling: refine N colour-jittered variants of the edit, keep the most consistent.

Variant 0 is the input itself; variants 1..N−1 jitter the colours of the masked region only. All
N go through the refiner in one batched forward. The winner is the output that moved least from
its own input over the mask and a band around its boundary: a refiner that has to change little
found a variant whose edit already agrees with the background.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import kornia.enhance as KE
import torch
import torch.nn.functional as F

METRICS = ("l1", "l2", "mean_color")


def colour_variants(image: torch.Tensor, mask: torch.Tensor, n: int,
                    generator: torch.Generator | Sequence[torch.Generator] | None,
                    brightness: float = 0.08, contrast: Sequence[float] = (0.9, 1.1),
                    saturation: Sequence[float] = (0.9, 1.1), hue: float = 0.02) -> torch.Tensor:
    """B×3×H×W → (B·n)×3×H×W, sample-major (rows b·n … b·n+n−1 belong to image b); variant 0 = input.

    ``generator``: one for the batch, or one per image (then an image's variants do not depend on
    which batch it was in — what folder refinement needs to be resumable and reproducible).
    """
    b = image.shape[0]
    x = image.repeat_interleave(n, dim=0)
    m = mask.repeat_interleave(n, dim=0).to(image.dtype)
    k = b * n
    per_image = isinstance(generator, (list, tuple))
    if per_image and len(generator) != b:
        raise ValueError(f"got {len(generator)} generators for {b} images; give one per image or one in all")

    def draw() -> torch.Tensor:
        if per_image:
            return torch.cat([torch.rand(n, generator=gi, device=gi.device, dtype=image.dtype).to(image.device)
                              for gi in generator])
        return torch.rand(k, generator=generator, device=image.device, dtype=image.dtype)

    def u(lo, hi):
        return lo + (hi - lo) * draw()

    jit = KE.adjust_brightness(x, u(-brightness, brightness))
    jit = KE.adjust_contrast(jit, u(*contrast))
    jit = KE.adjust_saturation(jit, u(*saturation))
    jit = KE.adjust_hue(jit, u(-hue, hue) * 2 * math.pi).clamp(0.0, 1.0)
    out = m * jit + (1.0 - m) * x
    keep = torch.zeros(k, dtype=torch.bool, device=image.device)
    keep[::n] = True  # variant 0 of each image is the untouched input
    return torch.where(keep[:, None, None, None], x, out)


def boundary_region(mask: torch.Tensor, band_px: int) -> torch.Tensor:
    """The mask plus a band of ``band_px`` pixels on both sides of its boundary (binary)."""
    m = (mask > 0.5).to(torch.float32)
    if band_px <= 0:
        return m
    return F.max_pool2d(m, 2 * band_px + 1, stride=1, padding=band_px)


def discrepancy(inputs: torch.Tensor, outputs: torch.Tensor, region: torch.Tensor, metric: str = "l1") -> torch.Tensor:
    """Per-sample input–output discrepancy over ``region`` (N values)."""
    r = region.to(inputs.dtype)
    area = r.sum(dim=(1, 2, 3)).clamp_min(1.0)
    diff = outputs - inputs
    if metric == "l1":
        return (diff.abs() * r).sum(dim=(1, 2, 3)) / (3 * area)
    if metric == "l2":
        return (diff.square() * r).sum(dim=(1, 2, 3)) / (3 * area)
    if metric == "mean_color":  # shift of the mean colour: ignores texture, sees casts
        return ((diff * r).sum(dim=(2, 3)) / area[:, None]).abs().mean(dim=1)
    raise ValueError(f"pooling metric must be one of {METRICS}; got {metric!r}")


def pooled_refine(refine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], image: torch.Tensor,
                  mask: torch.Tensor, pool: int, generator: torch.Generator | Sequence[torch.Generator] | None = None,
                  metric: str = "l1", band_px: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (chosen outputs B×3×H×W, chosen variant index B, scores B×pool)."""
    if pool < 1:
        raise ValueError(f"pool must be >= 1; got {pool}")
    if metric not in METRICS:
        raise ValueError(f"pooling metric must be one of {METRICS}; got {metric!r}")
    b = image.shape[0]
    variants = colour_variants(image, mask, pool, generator) if pool > 1 else image
    masks = mask.repeat_interleave(pool, dim=0)
    outputs = refine(variants, masks)  # one batched forward
    scores = discrepancy(variants, outputs, boundary_region(masks, band_px), metric).view(b, pool)
    index = scores.argmin(dim=1)
    chosen = outputs.view(b, pool, *outputs.shape[1:])[torch.arange(b, device=image.device), index]
    return chosen, index, scores
