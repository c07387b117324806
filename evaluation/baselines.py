"""Training-free post-processing baselines that a refiner must beat (the rows of the tables).

Each takes a batch ``x_gen`` N×3×H×W, ``mask`` N×1×H×W (1 = edited) and ``x_orig`` — the original
image, which an editing user always has. Only the original's *background* is used (outside the
mask): its interior is what the edit replaced and is never looked at.

- ``input``: the edit as it is;
- ``paste_back``: the original outside the mask (what most editors do);
- ``poisson``: OpenCV ``seamlessClone`` of the edit into the original (gradient-domain blending),
  with the mask dilated by the 4 px that OpenCV reaches inside it, so that its boundary values are the
  original's background and never the original under the mask;
- ``membrane``: Pérez et al.'s Poisson editing of the edit alone, with no guidance across the mask
  boundary: the edit keeps its own gradients and meets the background along the seam
  (``pixperfect.models.seam_offset`` solved to convergence, no smoothing or shrinkage);
- ``seam_offset``: what a ``seam_prior`` refiner starts from — the paste-back composite plus the
  seam offset as the refiner computes it (the jump across the seam, averaged along it, shrunk,
  push-pull filled);
- ``poisson_oracle``: ``seamlessClone`` as OpenCV runs it on the undilated mask, which takes its
  boundary values from the original up to 4 px *inside* the mask — the ground truth in a benchmark set.
  An upper bound no real edit has (an object removal would pull the removed object back in); not
  in the default rows;
- ``reinhard``: Reinhard et al.'s Lab mean/std transfer: the transform that maps a ring just inside
  the mask onto a ring of original background just outside it, applied to the whole edit;
- ``histogram``: per-channel histogram matching of the edit to that ring
  (``skimage.exposure.match_histograms``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import cv2
import numpy as np
import torch
from skimage.color import lab2rgb, rgb2lab
from skimage.exposure import match_histograms

from pixperfect.metrics import band_px, paste_back
from pixperfect.models.seam_offset import DEFAULT_CG, cg_iterations, seam_offset

Baseline = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _per_sample(fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> Baseline:
    """Lift an H×W×3 float numpy function (gen, binary mask H×W, orig) to N×C×H×W batches."""

    def batched(x_gen: torch.Tensor, mask: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
        outs = []
        for g, m, o in zip(x_gen, mask, x_orig):
            gen = g.permute(1, 2, 0).double().numpy()
            binary = m[0].numpy() > 0.5
            if not binary.any() or binary.all():  # nothing to blend into / nothing to blend from
                outs.append(g)
                continue
            out = fn(gen, binary, o.permute(1, 2, 0).double().numpy())
            outs.append(torch.from_numpy(np.clip(out, 0, 1)).permute(2, 0, 1).to(g.dtype))
        return torch.stack(outs)

    batched.__name__ = fn.__name__
    return batched


def _rings(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, outside): the edit's pixels and the original background's pixels within a band of
    the mask boundary — the two sides of the seam whose colours should agree. (OpenCV's
    morphology: linear in the kernel size, where a max-pool would be quadratic.)"""
    h, w = binary.shape
    px = 4 * band_px(h, w)
    kernel = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    m = binary.astype(np.uint8)
    outside = cv2.dilate(m, kernel).astype(bool) & ~binary
    inside = binary & ~cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    return inside, outside


def input_(x_gen: torch.Tensor, mask: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
    return x_gen


def paste_back_(x_gen: torch.Tensor, mask: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
    return paste_back(x_gen, x_orig, mask)


_OPENCV_ERODE = 4  # seamlessClone reads the destination up to 4 px inside the mask (measured: a 3 px dilation
#                   still removes half of a pasted cast from the undilated original; 4 px none)


def _seamless_clone(gen: np.ndarray, binary: np.ndarray, orig: np.ndarray, grow: int) -> np.ndarray:
    pad = 4 + grow  # seamlessClone misplaces or rejects masks that touch the image border
    to_u8 = lambda a: np.pad((a * 255).round().astype(np.uint8), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")  # noqa: E731
    src, dst = to_u8(gen), to_u8(orig)
    m = np.pad(binary.astype(np.uint8) * 255, pad)
    if grow:
        m = cv2.dilate(m, np.ones((3, 3), np.uint8), iterations=grow)
    x, y, w, h = cv2.boundingRect(m)
    center = (x + w // 2, y + h // 2)
    out = cv2.seamlessClone(src, dst, m, center, cv2.NORMAL_CLONE)
    return out[pad:-pad, pad:-pad].astype(np.float64) / 255.0


@_per_sample
def poisson(gen: np.ndarray, binary: np.ndarray, orig: np.ndarray) -> np.ndarray:
    return _seamless_clone(gen, binary, orig, grow=_OPENCV_ERODE)


@_per_sample
def poisson_oracle(gen: np.ndarray, binary: np.ndarray, orig: np.ndarray) -> np.ndarray:
    return _seamless_clone(gen, binary, orig, grow=0)


def membrane(x_gen: torch.Tensor, mask: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
    """The edit pasted into the original's background, plus the harmonic field whose flux across
    the mask boundary is the colour step there."""
    composite = paste_back(x_gen, x_orig, mask).float()
    # float32 CG from the push-pull start: converged to < 1e-6 of the float64 solution by 512
    # iterations at 512² (measured), where it stops early
    offset = seam_offset(composite, mask.float(), ring=0, shrink=0.0, iterations=2 * max(x_gen.shape[-2:]), compensate=False)
    return (composite + offset).clamp(0.0, 1.0).to(x_gen.dtype)


def seam_offset_(x_gen: torch.Tensor, mask: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
    """The paste-back composite plus the refiner's seam prior (an untrained ``seam_prior`` refiner)."""
    composite = paste_back(x_gen, x_orig, mask).float()
    iterations = cg_iterations(DEFAULT_CG, *x_gen.shape[-2:])
    return (composite + seam_offset(composite, mask.float(), iterations=iterations)).clamp(0.0, 1.0).to(x_gen.dtype)


def seam_offset_pushpull(x_gen: torch.Tensor, mask: torch.Tensor, x_orig: torch.Tensor) -> torch.Tensor:
    """``seam_offset`` with the push-pull fill alone (``seam_cg=0``): the row as measured before
    session 15, and an untrained refiner exported before ``seam_cg`` existed."""
    composite = paste_back(x_gen, x_orig, mask).float()
    return (composite + seam_offset(composite, mask.float(), iterations=0)).clamp(0.0, 1.0).to(x_gen.dtype)


@_per_sample
def reinhard(gen: np.ndarray, binary: np.ndarray, orig: np.ndarray) -> np.ndarray:
    """The Lab mean/std transform that maps the edit's side of the boundary onto the original's
    side, applied to the whole edit (the edit's own content keeps its contrast)."""
    inside, outside = _rings(binary)
    lab = lambda pixels: rgb2lab(pixels[None])[0]  # noqa: E731 — only the pixels needed, not the image
    src, ref, edit = lab(gen[inside]), lab(orig[outside]), lab(gen[binary])
    edit = (edit - src.mean(0)) / src.std(0).clip(1e-6) * ref.std(0) + ref.mean(0)
    out = gen.copy()
    with warnings.catch_warnings():  # out-of-gamut Lab values are clipped, which is what we want
        warnings.simplefilter("ignore", UserWarning)
        out[binary] = lab2rgb(edit[None])[0]
    return out


@_per_sample
def histogram(gen: np.ndarray, binary: np.ndarray, orig: np.ndarray) -> np.ndarray:
    """The edit's colour histogram matched to the original background around it."""
    _, outside = _rings(binary)
    out = gen.copy()
    out[binary] = match_histograms(gen[binary][None], orig[outside][None], channel_axis=-1)[0]
    return out


BASELINES: dict[str, Baseline] = {"input": input_, "paste_back": paste_back_, "poisson": poisson,
                                  "membrane": membrane, "seam_offset": seam_offset_, "seam_offset_pushpull": seam_offset_pushpull, "reinhard": reinhard, "histogram": histogram,
                                  "poisson_oracle": poisson_oracle}
