"""L1 reconstruction loss."""

from __future__ import annotations

import torch
from torch import nn

# an edit pixel counts as already right when no channel is off by more than half an 8-bit step
KEEP_TOLERANCE = 0.5 / 255


class L1Loss(nn.Module):
    """Mean absolute error over all pixels and channels; ``(loss, logs)``.

    The refiner must keep the background and fix the edit, so the whole image counts;
    ``mask_weight`` > 0 adds extra weight on the edited region (1 = edited). ``keep_weight`` > 0
    adds weight on the edit's pixels that the input already got right (``x_gen`` within half an
    8-bit step of ``x_gt``: a clean sample, the interior behind a re-inpainted band): a refiner
    that moves them only adds error, and a few sub-LSB changes over a large correct interior
    outweigh a fix on a thin band (README, "Do no harm").
    """

    def __init__(self, mask_weight: float = 0.0, keep_weight: float = 0.0):
        super().__init__()
        if mask_weight < 0 or keep_weight < 0:
            raise ValueError(f"L1Loss: mask_weight and keep_weight must be ≥ 0; got {mask_weight}, {keep_weight}")
        self.mask_weight = mask_weight
        self.keep_weight = keep_weight

    def weights(self, mask: torch.Tensor, x_gen: torch.Tensor | None = None,
                x_gt: torch.Tensor | None = None) -> torch.Tensor:
        """N×1×H×W per-pixel weight: 1 + mask_weight·mask + keep_weight·mask·[x_gen ≈ x_gt]."""
        w = 1.0 + self.mask_weight * mask
        if self.keep_weight and x_gen is not None and x_gt is not None:
            right = ((x_gen - x_gt).abs().amax(dim=1, keepdim=True) <= KEEP_TOLERANCE).to(mask.dtype)
            w = w + self.keep_weight * mask * right
        return w

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                x_gen: torch.Tensor | None = None, x_gt: torch.Tensor | None = None):
        err = (pred - target).abs()
        if (self.mask_weight or self.keep_weight) and mask is not None and err.ndim == 4 \
                and err.shape[-2:] == mask.shape[-2:]:
            err = err * self.weights(mask, x_gen, x_gt)
        loss = err.mean()
        return loss, {"l1": loss.detach()}
