"""L1 reconstruction loss."""

from __future__ import annotations

import torch
from torch import nn


class L1Loss(nn.Module):
    """Mean absolute error over all pixels and channels; ``(loss, logs)``.

    The refiner must keep the background and fix the edit, so the whole image counts;
    ``mask_weight`` > 0 adds extra weight on the edited region (1 = edited).
    """

    def __init__(self, mask_weight: float = 0.0):
        super().__init__()
        self.mask_weight = mask_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None):
        err = (pred - target).abs()
        if self.mask_weight and mask is not None and err.ndim == 4 and err.shape[-2:] == mask.shape[-2:]:
            err = err * (1.0 + self.mask_weight * mask)
        loss = err.mean()
        return loss, {"l1": loss.detach()}
