"""Boundary softening: random dilation/erosion and Gaussian blur of the composite alpha.

Real edits are pasted back through masks that are sometimes hard, sometimes feathered, and
rarely exactly the user's mask; this op turns the binary edit mask into such an alpha.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from simulation.ops.base import check_probability, check_range, numpy_rng


class BoundarySoftening:
    """``alpha = blur(morph(mask))``; morph is a dilation (r>0) or erosion (r<0) by an elliptic
    kernel of radius |r| px, blur a Gaussian of sigma in ``blur_sigma`` applied with probability
    ``p_blur`` (otherwise the edge stays hard). ``p_shift`` is the probability that r is drawn from
    ``radius`` at all (otherwise r = 0: the seam lies on the mask, as when the pipeline pastes back
    through the mask the refiner is given); a shifted seam is one the mask does not show."""

    name = "boundary"

    def __init__(self, p: float = 1.0, radius: Sequence[int] = (-4, 8), blur_sigma: Sequence[float] = (0.5, 6.0),
                 p_blur: float = 0.6, p_shift: float = 1.0):
        self.p = check_probability(p, self.name)
        lo, hi = check_range(radius, "boundary.radius")
        self.radius = (int(lo), int(hi))
        self.blur_sigma = check_range(blur_sigma, "boundary.blur_sigma", 0.0)
        self.p_blur = check_probability(p_blur, "boundary.p_blur")
        self.p_shift = check_probability(p_shift, "boundary.p_shift")

    def __call__(self, alpha: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rng = numpy_rng(generator)
        a = alpha[0].numpy().astype(np.float32)
        shifted = self.p_shift >= 1.0 or rng.random() < self.p_shift  # p_shift=1 draws as before
        r = int(rng.integers(self.radius[0], self.radius[1] + 1)) if shifted else 0
        if r != 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
            a = cv2.dilate(a, kernel) if r > 0 else cv2.erode(a, kernel)
        if rng.random() < self.p_blur:
            sigma = float(rng.uniform(*self.blur_sigma))
            a = cv2.GaussianBlur(a, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        return torch.from_numpy(np.clip(a, 0.0, 1.0))[None]
