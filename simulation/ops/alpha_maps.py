"""Random smooth alpha maps that make an artifact vary across the edit (linear, radial, noise)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from simulation.ops.base import uniform

KINDS = ("constant", "linear", "radial", "noise")


def gradient_alpha(height: int, width: int, generator: torch.Generator, kinds=KINDS,
                   min_alpha: float = 0.3) -> torch.Tensor:
    """1×H×W map in [min_alpha, 1] of a randomly chosen kind."""
    kind = kinds[int(torch.randint(len(kinds), (), generator=generator))]
    ys = torch.linspace(-1.0, 1.0, height)[:, None].expand(height, width)
    xs = torch.linspace(-1.0, 1.0, width)[None, :].expand(height, width)
    if kind == "constant":
        a = torch.ones(height, width)
    elif kind == "linear":
        theta = uniform(generator, 0.0, 2 * math.pi)
        a = xs * math.cos(theta) + ys * math.sin(theta)
    elif kind == "radial":
        cx, cy = uniform(generator, -1, 1), uniform(generator, -1, 1)
        a = -torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    elif kind == "noise":
        cells = int(torch.randint(2, 6, (), generator=generator))
        grid = torch.rand(1, 1, cells, cells, generator=generator)
        a = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=True)[0, 0]
    else:
        raise ValueError(f"unknown alpha map kind {kind!r}; expected one of {KINDS}")
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else torch.ones_like(a)
    return (min_alpha + (1.0 - min_alpha) * a)[None]
