"""Per-sample image metrics: the paper's (L1, PSNR on the whole image) and the edit-region ones.

Conventions: images N×3×H×W in [0, 1], masks N×1×H×W with 1 = edited. "Masked" metrics use the
mask dilated by ``band_px`` (artifacts spill past the mask); ``bg_mse`` uses what lies outside it.
"""

from __future__ import annotations

import torch
from kornia.filters import sobel

from pixperfect.metrics.ciede2000 import ciede2000
from pixperfect.metrics.regions import band_px, dilate, ring

PSNR_CAP_DB = 60.0  # an untouched sample has infinite PSNR, which would turn every mean into inf


def _region_mean(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean of N×C×H×W ``values`` over an N×1×H×W {0,1} region, per sample (0 where the region is empty)."""
    r = region.to(values.dtype).expand_as(values)
    return (values * r).sum(dim=(1, 2, 3)) / r.sum(dim=(1, 2, 3)).clamp_min(1.0)


def _psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))).clamp(max=PSNR_CAP_DB)


def edit_region(mask: torch.Tensor, band: int | None = None) -> torch.Tensor:
    """The mask dilated by ``band`` px (default: ``band_px`` of the image size)."""
    h, w = mask.shape[-2:]
    return dilate(mask, band_px(h, w) if band is None else band)


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the whole image."""
    return (pred.float() - target.float()).abs().mean(dim=(1, 2, 3))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, data range 1) over the whole image, capped at 60 dB."""
    return _psnr_from_mse((pred.float() - target.float()).square().mean(dim=(1, 2, 3)))


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, band: int | None = None) -> torch.Tensor:
    """Mean |pred − target| over the dilated edit region (all channels)."""
    return _region_mean((pred.float() - target.float()).abs(), edit_region(mask, band))


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, band: int | None = None) -> torch.Tensor:
    """PSNR over the dilated edit region, capped at 60 dB."""
    return _psnr_from_mse(_region_mean((pred.float() - target.float()).square(), edit_region(mask, band)))


def bg_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, band: int | None = None) -> torch.Tensor:
    """MSE outside the dilated edit region: how much the background changed (PILOT's metric)."""
    return _region_mean((pred.float() - target.float()).square(), 1.0 - edit_region(mask, band))


def delta_e(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 colour difference over the edit mask (binarised at 0.5)."""
    out = []
    for p, t, m in zip(pred, target, mask):  # only the masked pixels go through the (costly) formula
        sel = m[0] > 0.5
        if not bool(sel.any()):
            out.append(pred.new_zeros((), dtype=torch.float32))
            continue
        out.append(ciede2000(p[:, sel][None, :, :, None], t[:, sel][None, :, :, None]).float().mean())
    return torch.stack(out)


def seam(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """Gradient-magnitude error on a thin ring across the mask boundary: a visible seam is an edge
    the original does not have (or a missing one). Ring: ``width`` px each side (default 1/128 of
    the short side, at least 1)."""
    h, w = mask.shape[-2:]
    width = max(1, min(h, w) // 128) if width is None else width
    err = (sobel(pred.float()) - sobel(target.float())).abs()
    return _region_mean(err, ring(mask, width))


def paste_back(x_gen: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The common post-processing baseline: the original background pasted around the edit mask."""
    m = (mask > 0.5).to(x_gen.dtype)
    return m * x_gen + (1.0 - m) * x_gt
