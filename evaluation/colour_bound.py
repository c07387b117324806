"""How far can a colour correction of the edit go on a set? Oracle rows that read the target.

    python -m evaluation.colour_bound --set .cache/cpu_small_benchmark_256
    python -m evaluation.colour_bound --set .cache/demo_benchmark_256 --windows 8,16,32
    python -m evaluation.colour_bound --set eval_sets/cbsd68val_256 --split-boundary

A refiner, or a prior, that fixes colour (an offset, a per-channel gain and offset, smooth in space)
cannot remove error that is not colour: texture, a re-inpainted band, detail an autoencoder lost.
Each row here is such a correction *fitted with the target*: per image (or per sliding window of
radius ``side/k``), the offset ``d = mean(x_gt − x_gen)`` or the per-channel least-squares map
``x_gt ≈ a·x_gen + b`` in RGB over the mask (> 0.5), applied inside the mask only, and left out for
an image it would make worse. Scored as ``evaluate`` scores every row: masked L1 over the mask
dilated by the band, ÷ the input's, overall and per family.

It is an oracle *reference*, not a strict bound. A method of the same form with estimated
parameters should not beat its row; one that fits for L1 rather than least squares, mixes
channels, is non-linear, works on a finer grain, or also corrects the band outside the mask (where
a feathered paste spills its cast) can. The gap between a method's row and these is what estimating
colour can still win; their distance from a target is, roughly, what only texture restoration could.
"""

from __future__ import annotations

import argparse
import sys

import torch
from kornia.filters import box_blur

from evaluation.evaluate import quantized
from evaluation.prior_sweep import format_table, scored, split_by_boundary, table_of
from evaluation.sets import EvalInputError, load_set
from pixperfect.metrics import masked_l1

KINDS = ("offset", "affine")


def _window_mean(values: torch.Tensor, weight: torch.Tensor, radius: int | None) -> torch.Tensor:
    """The ``weight``-weighted mean of ``values`` over the whole image (``radius`` None) or over the
    (2r+1)² window around each pixel (zero outside the image)."""
    if radius is None:
        return (values * weight).sum(dim=(2, 3), keepdim=True) / weight.sum(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    k = 2 * radius + 1
    # the window's area cancels in the ratio; constant borders = nothing outside the image
    return box_blur(values * weight, k, border_type="constant") / box_blur(weight, k, border_type="constant").clamp_min(1e-8)


def oracle_correction(kind: str, window: int | None = None, eps: float = 1e-6):
    """An ``evaluate`` method (reads ``x_gt``: an oracle, not a method): the edit corrected by the
    offset or per-channel affine colour map that best fits the target (least squares) over the
    mask, per image (``window`` None) or per sliding window of radius ``side // window`` px (at
    least 1) of each image's short side; an image it would make worse is returned unchanged."""
    if kind not in KINDS:
        raise ValueError(f"oracle_correction: kind must be one of {KINDS}; got {kind!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"oracle_correction: window must be a whole number k ≥ 1 (radius side/k) or None "
                         f"(one fit per image); got {window!r}")

    def method(x_gen, mask, x_gt, batch_index):
        x, y = x_gen.float(), x_gt.float()
        inside = (mask.float() > 0.5).float()
        radius = None if window is None else max(1, min(x.shape[-2:]) // window)
        mean = lambda t: _window_mean(t, inside, radius)  # noqa: E731
        mx, my = mean(x), mean(y)
        if kind == "offset":
            fit = x + (my - mx)
        else:  # least squares per channel: a = cov(x, y) / var(x), b = ȳ − a·x̄
            a = (mean(x * y) - mx * my) / ((mean(x * x) - mx * mx).clamp_min(0.0) + eps)
            fit = a * x + (my - a * mx)
        out = torch.where(inside > 0.5, fit, x).clamp(0.0, 1.0)
        worse = masked_l1(out, y, mask) > masked_l1(x, y, mask)
        return torch.where(worse[:, None, None, None], x, out)
    return method


def oracle_methods(windows: list[int], kinds=KINDS) -> dict:
    """Named oracle rows: per image, then per window of radius side/k for each k."""
    methods = {}
    for kind in kinds:
        methods[f"{kind}, one per image"] = oracle_correction(kind)
        for k in windows:
            methods[f"{kind}, windows of radius side/{k}"] = oracle_correction(kind, k)
    return methods


def input_error_shares(results: dict, n: int) -> dict[str, float]:
    """Per family label, the share of the set's summed input masked L1 its samples hold, from
    ``evaluate``'s results on ``n`` samples (per family: its count times its mean). A sample counts
    in every label it carries: with one artifact label per sample (``make_set``'s recipes) the
    artifact families sum to 1, and the boundary labels to the share of the error in samples that
    have a seam (``vae_full`` has none)."""
    total = n * results["methods"]["input"]["masked_l1"]
    return {label: (per["input"]["n"] * per["input"]["masked_l1"] / total if total > 0 else 0.0)
            for label, per in sorted(results["families"].items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.colour_bound", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", required=True, help="an evaluation set (evaluation.make_set)")
    parser.add_argument("--windows", default="8,16",
                        help="window radii as fractions side/k, comma-separated k (default 8,16)")
    parser.add_argument("--output-bits", type=int, default=None,
                        help="score every row as an image of this many bits per channel (evaluate's output_bits)")
    parser.add_argument("--split-boundary", action="store_true",
                        help="split each family by its samples' seam (hard / feathered), as prior_sweep does")
    args = parser.parse_args(argv)
    try:
        windows = [int(v) for v in args.windows.split(",")]
        if any(k < 1 for k in windows):
            raise ValueError
    except ValueError:
        print(f"error: --windows takes whole numbers k ≥ 1 (radius side/k), comma-separated; got {args.windows!r}",
              file=sys.stderr)
        return 2
    try:
        records = load_set(args.set)
        if args.split_boundary:
            records = split_by_boundary(records)
        methods = {"input": lambda g, m, o, i: g, **oracle_methods(windows)}
        if args.output_bits is not None:  # every row rounded, the input (the denominator) included
            methods = {name: quantized(fn, args.output_bits) for name, fn in methods.items()}
        names, results = scored(records, methods)
        table, shares = table_of(results, names), input_error_shares(results, len(records))
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"# oracle colour corrections on {args.set} ({len(records)} samples): masked L1 ÷ the input's "
          "(clean: absolute); they read the target: a reference for colour-only methods, not a method")
    print(format_table(table))
    print("\nshare of the input's masked L1 per family: "
          + ", ".join(f"{label} {share:.1%}" for label, share in shares.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
