"""The artifact-op interface.

An op is a pure function ``op(image, mask, generator) -> image`` on one CHW sample in [0, 1]
(mask 1×H×W, 1 = edited). All randomness comes from ``generator``, so a fixed seed gives a
bit-identical result on CPU. ``p`` is the probability the pipeline applies it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class ArtifactOp(Protocol):
    p: float
    name: str

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float in [low, high) from a torch generator."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy RNG derived from (and advancing) a torch generator, for OpenCV-based ops."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))


def check_probability(p: float, name: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}.p must be in [0, 1]; got {p}")
    return float(p)


def check_range(r, name: str, low: float = -np.inf, high: float = np.inf) -> tuple[float, float]:
    lo, hi = (float(r[0]), float(r[1]))
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{name} must be a [min, max] range within [{low}, {high}]; got {list(r)}")
    return lo, hi
