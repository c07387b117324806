"""How sure is a masked-L1 ratio? A paired bootstrap interval over a set's samples.

A family of a benchmark set holds a handful of edits (2 in the demo's set, 6 in `cpu_small`'s), so
"1.009× the input" may be one unlucky image. Resampling the edits with replacement, each with its
method *and* input error (paired: the same edit's two numbers stay together), gives the spread of
the ratio of means that another draw of edits from the same recipe would show. It says nothing of
the spread between training seeds, which needs more runs.

``scipy.stats.bootstrap`` does the resampling; the percentile interval, not BCa, because BCa's
jackknife is undefined for the 2-edit families of the demo's set (scipy returns NaN there). Two
limits, both in the README: with a handful of edits the interval is little more than their own
range (with 2 it is the two edits' ratios), and edits of one photo are resampled as if
independent, so a set with few photos gets intervals that are too narrow. ``groups`` (evaluate's
``interval_by=photo``) resamples whole photos instead: a cluster bootstrap, each photo's edits
kept together.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.stats import DegenerateDataWarning, bootstrap

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0  # a fixed seed: the same set and outputs give the same interval
MIN_EDITS = 5  # fewer edits (photos, resampling photos) than this: the interval is about their own range, too few to call harm


def _ratio_of_means(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.mean(axis=axis) / den.mean(axis=axis)


def group_sums(a: np.ndarray, b: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
    """Per-group totals of ``a`` and ``b``: the ratio of their means over groups is the ratio of the
    totals, i.e. the same ratio of means over samples, now resampled a group at a time."""
    labels = np.asarray(list(groups))
    if labels.shape != a.shape:
        raise ValueError(f"ratio_interval: groups must name one group per sample; got {labels.shape} for {a.shape}")
    _, inverse = np.unique(labels, return_inverse=True)
    return np.bincount(inverse, weights=a), np.bincount(inverse, weights=b)


def ratio_interval(num: torch.Tensor, den: torch.Tensor, level: float = LEVEL, resamples: int = RESAMPLES,
                   seed: int = SEED, groups=None) -> tuple[float, float] | None:
    """The ``level`` percentile interval of ``mean(num) / mean(den)`` over paired resamples of the
    samples (``num[i]``, ``den[i]`` one edit's method and input errors), or of whole groups of
    samples with ``groups`` (one label per sample, e.g. its source photo). None where it is not
    defined: fewer than two samples or ``MIN_EDITS`` groups, a value that is not finite, an input
    error that is zero on average (a clean family), or resamples that draw only zero-error inputs."""
    a = np.asarray(num, dtype=np.float64).reshape(-1)
    b = np.asarray(den, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"ratio_interval: num and den must pair up sample by sample; got {a.shape} and {b.shape}")
    if groups is not None:
        a, b = group_sums(a, b, groups)
        if a.size < MIN_EDITS:  # two or three photos cannot say how much photos differ: no interval
            return None
    if a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()) or b.mean() <= 1e-8:
        return None
    with warnings.catch_warnings():  # a resample of only zero-error inputs is a NaN ratio: None below, not a warning
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap((a, b), _ratio_of_means, paired=True, vectorized=True, n_resamples=resamples,
                        batch=200, confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return lo, hi
