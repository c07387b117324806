"""Content discontinuity: re-inpaint a narrow band around the mask boundary, then paste the
original background back, leaving a seam — the broken structures LDM edits show at their edge."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from simulation.ops.base import check_probability, check_range, numpy_rng

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """uint8 band of ``width`` px on both sides of a binary mask's boundary."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)).astype(np.uint8)


def opencv_inpainter(method: str = "telea", radius: int = 3) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """An inpainter ``(HxWx3 uint8 image, HxW uint8 region) → image`` from OpenCV."""
    if method not in METHODS:
        raise ValueError(f"content_band.method must be one of {sorted(METHODS)}; got {method!r}")

    def inpaint(image: np.ndarray, region: np.ndarray) -> np.ndarray:
        return cv2.inpaint(image, region, radius, METHODS[method])

    return inpaint


class ContentBand:
    """Re-inpaint a band of random width around the edit boundary (OpenCV Telea / Navier–Stokes,
    or any ``inpainter(image_uint8, region_uint8) → image_uint8``). The pipeline's composite then
    pastes the background back over the band's outer half."""

    name = "content_band"

    def __init__(self, p: float = 0.5, width: Sequence[int] = (2, 10), method: str = "telea", radius: int = 3,
                 inpainter: Callable | None = None):
        self.p = check_probability(p, self.name)
        lo, hi = check_range(width, "content_band.width", 1)
        self.width = (int(lo), int(hi))
        self.inpainter = inpainter if inpainter is not None else opencv_inpainter(method, radius)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rng = numpy_rng(generator)
        width = int(rng.integers(self.width[0], self.width[1] + 1))
        m = (mask[0].numpy() > 0.5).astype(np.uint8)
        band = boundary_band(m, width)
        if band.sum() == 0:
            return image
        arr = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        filled = self.inpainter(arr, band).astype(np.float32) / 255.0
        band_t = torch.from_numpy(band.astype(np.float32))[None]
        # outside the band the edit keeps its exact float values (no 8-bit quantisation)
        return band_t * torch.from_numpy(filled).permute(2, 0, 1) + (1 - band_t) * image
