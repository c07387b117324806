"""Image-quality metrics shared by training validation and ``python -m evaluation.evaluate``.

They live in ``pixperfect`` (not ``evaluation``) because training may not import ``evaluation``
(see DESIGN.md); one implementation means W&B and ``evaluate`` report the same numbers.
Every function returns one value per sample (an N-vector), so callers choose how to average.
"""

from pixperfect.metrics.ciede2000 import ciede2000
from pixperfect.metrics.distribution import FeatureDistance, inception_unavailable_reason
from pixperfect.metrics.image import (
    PSNR_CAP_DB,
    bg_mse,
    delta_e,
    l1,
    masked_l1,
    masked_psnr,
    paste_back,
    psnr,
    seam,
)
from pixperfect.metrics.regions import band_px, dilate, erode, ring

__all__ = ["PSNR_CAP_DB", "FeatureDistance", "band_px", "bg_mse", "ciede2000", "delta_e", "dilate", "erode",
           "inception_unavailable_reason", "l1", "masked_l1", "masked_psnr", "paste_back", "psnr", "ring", "seam"]
