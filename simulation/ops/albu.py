"""Albumentations versions of the CPU texture ops (JPEG, Gaussian noise, Gaussian blur), exactly seeded.

Same contract as the hand-written ops in ``simulation/ops/texture.py``: a 3×H×W float32 tensor in
[0, 1] in, the same out, the op's parameter chosen by the caller (the pipeline draws it from the
sample's generator). What albumentations would draw itself is pinned: the parameter range is the
single value asked for, and its random state is seeded from the caller's generator (one int64
draw per call, also for the deterministic ops, so swapping an op never shifts later draws of a
sample). Same generator state → the same output, bit for bit.

Differences from the hand-written ops, by design of albumentations: the blur kernel is
truncated at a different radius and uses reflect-101 borders (``cv2.BORDER_REFLECT_101``), so
outputs agree in distribution, not bitwise (tests/test_albu.py; speed: ``python -m evaluation.bench_albu``).
"""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch


def _seed(generator: torch.Generator | None) -> int:
    """One draw from ``generator`` (or 0 without one) → albumentations' seed."""
    if generator is None:
        return 0
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _run(transform: A.BasicTransform, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a 3×H×W image tensor; got shape {tuple(image.shape)}")
    transform.set_random_seed(_seed(generator))
    arr = np.ascontiguousarray(image.detach().to(torch.float32).cpu().permute(1, 2, 0).numpy())
    out = transform(image=arr)["image"]
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).permute(2, 0, 1).contiguous()


def jpeg(image: torch.Tensor, quality: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """JPEG round trip at ``quality`` (``A.ImageCompression``)."""
    q = int(quality)
    return _run(A.ImageCompression(compression_type="jpeg", quality_range=(q, q), p=1.0), image, generator)


def gauss_noise(image: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive zero-mean Gaussian noise of standard deviation ``sigma`` per pixel and channel,
    clipped to [0, 1] (``A.GaussNoise``; for float images its std is a fraction of 1.0)."""
    s = float(sigma)
    return _run(A.GaussNoise(std_range=(s, s), mean_range=(0.0, 0.0), per_channel=True, p=1.0), image, generator)


def gaussian_blur(image: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels, kernel size from sigma (``A.GaussianBlur``)."""
    s = float(sigma)
    return _run(A.GaussianBlur(blur_limit=0, sigma_limit=(s, s), p=1.0), image, generator)
