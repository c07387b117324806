"""Keep the background: paste the refined edit back into the input through a feathered band.

A refiner is trained to fix the edit and its boundary; everywhere else the input is already
what the user wants. ``region="edit"`` therefore keeps the refined pixels only inside the mask
dilated by ``band_px`` and fades to the input over a further ``feather_px``: every pixel farther
than ``band_px + feather_px`` from the mask is the input, bit for bit. Evaluation and training
reuse :func:`composite_edit` so they measure exactly what inference returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REGIONS = ("edit", "full")


def default_band_px(height: int, width: int) -> int:
    """Dilation (and feather) width that scales with the image: max(4, min(H, W) // 32) px."""
    return max(4, min(height, width) // 32)


def edit_alpha(mask: torch.Tensor, band_px: int | None = None, feather_px: int | None = None) -> torch.Tensor:
    """N×1×H×W blend weight of the refined output: 1 on the mask dilated by ``band_px - feather_px``
    (so always on the mask itself), falling to 0 at ``band_px + feather_px`` from it, exactly 0 beyond.

    The mask is binarised at 0.5 (soft fringes lie inside the dilation). The feather is a box
    average of the dilated mask, so its support is exact (no Gaussian tails).
    """
    h, w = mask.shape[-2:]
    band = default_band_px(h, w) if band_px is None else int(band_px)
    feather = band if feather_px is None else int(feather_px)
    if band < 0 or feather < 0:
        raise ValueError(f"band_px and feather_px must be >= 0; got {band}, {feather}")
    feather = min(feather, band)  # keep alpha == 1 on every mask pixel
    m = (mask > 0.5).to(torch.float32)
    if band > 0:
        m = F.max_pool2d(m, 2 * band + 1, stride=1, padding=band)
    if feather > 0:
        m = F.avg_pool2d(m, 2 * feather + 1, stride=1, padding=feather, count_include_pad=False)
    return m


def composite_edit(refined: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, band_px: int | None = None,
                   feather_px: int | None = None) -> torch.Tensor:
    """``refined`` inside the dilated, feathered mask, ``image`` outside (bit-identical there).

    ``refined`` and ``image`` N×3×H×W, ``mask`` N×1×H×W (1 = edited). Returns ``image``'s dtype.
    """
    alpha = edit_alpha(mask, band_px, feather_px).to(image.device)
    refined = refined.to(image.dtype)
    blend = image + alpha.to(image.dtype) * (refined - image)
    return torch.where(alpha > 0, blend, image)
