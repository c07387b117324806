"""Validation metrics on the edited region, per sample."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |pred − target| over the masked pixels (all channels); N values."""
    m = mask.to(pred.dtype).expand_as(pred)
    return ((pred - target).abs() * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1.0)


PSNR_CAP_DB = 60.0


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR (dB) over the whole image, data range 1; N values.

    Capped at 60 dB: a sample the simulation left untouched has infinite PSNR for the input,
    which would turn every mean into inf.
    """
    value = peak_signal_noise_ratio(pred.float(), target.float(), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return value.clamp(max=PSNR_CAP_DB)


def paste_back(x_gen: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The common post-processing baseline: the original background pasted around the edit mask."""
    m = (mask > 0.5).to(x_gen.dtype)
    return m * x_gen + (1.0 - m) * x_gt
