"""Image spaces the refiner's losses are computed in.

A space turns (x_pred, x_gt, mask) into a map ``f`` applied to both images before comparing
them. The pixel space is the identity. Spaces that are *fitted* per sample (the polynomial
discriminative space) fit once per training step on the detached prediction, and the same
``f`` serves the discriminator step and the generator step.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class SpaceMap(Protocol):
    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...

    def to_valid_range(self, image: torch.Tensor) -> torch.Tensor:
        """The mapped image brought back to [0, 1] for LPIPS and the discriminator."""
        ...


class IdentityMap:
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def to_valid_range(self, image: torch.Tensor) -> torch.Tensor:
        return image


class PixelSpace(nn.Module):
    """Plain RGB in [0, 1]."""

    def fit(self, x_pred: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor,
            generator: torch.Generator | None = None) -> SpaceMap:
        return IdentityMap()
