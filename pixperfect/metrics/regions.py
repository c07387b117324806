"""Regions that metrics are computed on: the edit mask grown by a band that scales with image size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def band_px(height: int, width: int, divisor: int = 64, minimum: int = 2) -> int:
    """Width in pixels of the band around an edit: 1/``divisor`` of the short side (4 px at 256², 8 at 512²).

    LDM artifacts spill past the user's mask by an amount that grows with resolution (latent
    cells are 8 px, decoders blur across several), so a fixed pixel band would measure a
    different thing at each size.
    """
    return max(minimum, min(height, width) // divisor)


def dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Binary dilation of an N×1×H×W mask (thresholded at 0.5) by a (2px+1)² square."""
    m = (mask > 0.5).to(torch.float32)
    if px <= 0:
        return m
    k = 2 * px + 1  # a square is separable: two 1-D max-pools, linear instead of quadratic in px
    m = F.max_pool2d(m, (k, 1), stride=1, padding=(px, 0))
    return F.max_pool2d(m, (1, k), stride=1, padding=(0, px))


def erode(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Binary erosion of an N×1×H×W mask by a (2px+1)² square (outside the image counts as background)."""
    m = (mask > 0.5).to(torch.float32)
    if px <= 0:
        return m
    k = 2 * px + 1
    inv = F.max_pool2d(F.pad(1.0 - m, (0, 0, px, px), value=1.0), (k, 1), stride=1)
    inv = F.max_pool2d(F.pad(inv, (px, px, 0, 0), value=1.0), (1, k), stride=1)
    return 1.0 - inv


def ring(mask: torch.Tensor, px: int) -> torch.Tensor:
    """The band of ``px`` pixels on both sides of the mask boundary (dilated minus eroded)."""
    return dilate(mask, px) - erode(mask, px)
