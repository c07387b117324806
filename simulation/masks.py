"""Edit-mask generators: what a user's inpainting mask looks like (1 = region to edit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch

from simulation.ops.base import check_range, numpy_rng


def _strokes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Free-form brush strokes (LaMa / DeepFill style): thick random polylines."""
    m = np.zeros((h, w), np.uint8)
    s = min(h, w)
    for _ in range(int(rng.integers(1, 5))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        width = int(rng.integers(max(2, s // 24), max(3, s // 6)))
        for _ in range(int(rng.integers(2, 8))):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(s / 10, s / 3)
            nx = int(np.clip(x + length * np.cos(angle), 0, w - 1))
            ny = int(np.clip(y + length * np.sin(angle), 0, h - 1))
            cv2.line(m, (x, y), (nx, ny), 1, width)
            cv2.circle(m, (nx, ny), width // 2, 1, -1)
            x, y = nx, ny
    return m


def _blobs(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Unions of random rotated ellipses: object-like, convex-ish regions."""
    m = np.zeros((h, w), np.uint8)
    s = min(h, w)
    for _ in range(int(rng.integers(1, 4))):
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.uniform(s / 12, s / 3)), int(rng.uniform(s / 12, s / 3)))
        cv2.ellipse(m, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m


def _boxes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Axis-aligned rectangles, the most common mask drawn in editing UIs."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        bh, bw = int(rng.uniform(0.15, 0.6) * h), int(rng.uniform(0.15, 0.6) * w)
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        m[y : y + bh, x : x + bw] = 1
    return m


def _outpaint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Borders on 1–4 sides: the region an outpainting / uncrop edit generates."""
    m = np.zeros((h, w), np.uint8)
    sides = rng.permutation(4)[: int(rng.integers(1, 5))]
    for side in sides:
        frac = rng.uniform(0.1, 0.35)
        if side == 0:
            m[: int(frac * h)] = 1
        elif side == 1:
            m[h - int(frac * h):] = 1
        elif side == 2:
            m[:, : int(frac * w)] = 1
        else:
            m[:, w - int(frac * w):] = 1
    return m


SHAPES = {"strokes": _strokes, "blobs": _blobs, "boxes": _boxes, "outpaint": _outpaint}


class MaskGenerator:
    """Draws a mask of a random shape family whose coverage lies in ``coverage``.

    Args:
        weights: mixture weights per family (``strokes``, ``blobs`` (ellipses), ``boxes``,
            ``outpaint`` (image borders)).
        coverage: [min, max] fraction of the image the mask covers; shapes are redrawn up to
            ``max_tries`` times, then the closest draw is grown/shrunk into range.
        object_p: probability of using a sample's own object mask (``mask.png`` in the shard)
            when it has one, instead of drawing a synthetic mask.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, coverage: Sequence[float] = (0.05, 0.5),
                 max_tries: int = 20, object_p: float = 0.5):
        weights = dict(weights or {"strokes": 0.35, "blobs": 0.35, "boxes": 0.2, "outpaint": 0.1})
        if not 0.0 <= object_p <= 1.0:
            raise ValueError(f"masks.object_p must be in [0, 1]; got {object_p}")
        self.object_p = float(object_p)
        bad = set(weights) - set(SHAPES)
        if bad:
            raise ValueError(f"masks.weights has unknown families {sorted(bad)}; expected some of {sorted(SHAPES)}")
        total = sum(weights.values())
        if total <= 0 or any(v < 0 for v in weights.values()):
            raise ValueError(f"masks.weights must be non-negative and not all zero; got {weights}")
        self.families = list(weights)
        self.probs = np.array([weights[k] / total for k in self.families])
        self.coverage = check_range(coverage, "masks.coverage", 0.0, 1.0)
        self.max_tries = max_tries

    def __call__(self, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """A binary 1×H×W float mask."""
        rng = numpy_rng(generator)
        lo, hi = self.coverage
        best, best_gap = None, np.inf
        for _ in range(self.max_tries):
            family = self.families[int(rng.choice(len(self.families), p=self.probs))]
            m = SHAPES[family](height, width, rng)
            cov = m.mean()
            if lo <= cov <= hi and cov > 0:
                return torch.from_numpy(m.astype(np.float32))[None]
            gap = lo - cov if cov < lo else cov - hi
            if gap < best_gap:
                best, best_gap = m, gap
        return torch.from_numpy(_fit_coverage(best, lo, hi).astype(np.float32))[None]


def _fit_coverage(m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Grow (dilate) or shrink (erode) a mask step by step until its coverage is in [lo, hi]."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    h, w = m.shape
    for _ in range(max(h, w)):
        cov = m.mean()
        if cov < lo:
            if cov == 0:
                m = m.copy()
                m[h // 2, w // 2] = 1
            m = cv2.dilate(m, kernel)
        elif cov > hi:
            eroded = cv2.erode(m, kernel)
            if eroded.sum() == 0:
                break
            m = eroded
        else:
            break
    if not lo <= m.mean() <= hi:
        # Morphology overshot (tiny image / narrow range): a centred box of the target area.
        side = np.sqrt((lo + hi) / 2 * h * w)
        bh, bw = min(h, max(1, int(round(side)))), min(w, max(1, int(round((lo + hi) / 2 * h * w / max(1, round(side))))))
        m = np.zeros((h, w), np.uint8)
        y, x = (h - bh) // 2, (w - bw) // 2
        m[y : y + bh, x : x + bw] = 1
    return m
