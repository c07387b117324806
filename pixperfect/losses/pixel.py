"""L1 reconstruction loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    outweigh a fix on a thin band (docs/seam_prior.md, "Do no harm").

    ``lowpass_weight`` > 0 adds the same weighted L1 between ``lowpass_size``-pixel block means of
    prediction and target. A block mean keeps a colour cast whole and averages out texture the
    target holds and no refiner can know (JPEG blocks and noise on the scene): per pixel, the
    sign-like L1 gradient of that texture drowns the cast's (docs/learning_diagnostics.md, "A low-pass
    L1 term does not change it either"). Each block counts once, so with a size that does not divide the image the
    pixels of its partial edge blocks weigh more. It applies to image-shaped spaces only (N×C×H×W).
    """

    def __init__(self, mask_weight: float = 0.0, keep_weight: float = 0.0, lowpass_weight: float = 0.0,
                 lowpass_size: int = 8):
        super().__init__()
        if mask_weight < 0 or keep_weight < 0 or lowpass_weight < 0:
            raise ValueError("L1Loss: mask_weight, keep_weight and lowpass_weight must be ≥ 0; got "
                             f"{mask_weight}, {keep_weight}, {lowpass_weight}")
        if int(lowpass_size) != lowpass_size or lowpass_size < 1:
            raise ValueError(f"L1Loss: lowpass_size must be a whole number of pixels ≥ 1; got {lowpass_size}")
        self.mask_weight = mask_weight
        self.keep_weight = keep_weight
        self.lowpass_weight = lowpass_weight
        self.lowpass_size = int(lowpass_size)

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
        weighted = (self.mask_weight or self.keep_weight) and mask is not None and err.ndim == 4 \
            and err.shape[-2:] == mask.shape[-2:]
        weights = self.weights(mask, x_gen, x_gt) if weighted else None
        loss = (err * weights if weighted else err).mean()
        logs = {"l1": loss.detach()}
        if self.lowpass_weight and err.ndim == 4:
            k = self.lowpass_size
            # float32 block means: in bf16 they round to ~1/255, the size of the casts they are for;
            # ceil_mode: a partial edge block is the mean of its own pixels
            pool = lambda t: F.avg_pool2d(t.float(), k, ceil_mode=True)  # noqa: E731
            low = (pool(pred) - pool(target)).abs()
            low = (low * pool(weights) if weighted else low).mean()
            loss = loss + self.lowpass_weight * low
            logs["l1_lowpass"] = low.detach()
        return loss, logs
