"""How much does the discriminative pixel space amplify an edit's error, per family and map?

    python -m evaluation.amplification --set SET [--degrees 2,6,10] [--limit N]

For each sample of ``SET`` the input itself plays the prediction (a refiner that changed nothing),
the polynomial map ``f`` is fitted exactly as in training (β ~ U[20, 40]), and the amplification
factor is ``mean|f(x_gen) − f(x_gt)| / mean|x_gen − x_gt|`` on the dilated mask, with and without
cross-channel monomials, at each degree. A colour map can only amplify what a colour map can
express: casts should be amplified ~β×, texture errors much less. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def amplification(x_gen: torch.Tensor, x_gt: torch.Tensor, mask: torch.Tensor, degree: int, cross: bool,
                  seed: int = 0) -> tuple[torch.Tensor, float]:
    """Per-sample amplification factors and the fit time (s) for one batch."""
    from pixperfect.losses import DiscriminativeSpace
    from pixperfect.metrics import masked_l1

    space = DiscriminativeSpace(degree=degree, cross_channel=cross)
    t0 = time.perf_counter()
    fitted = space.fit(x_gen, x_gt, mask, generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        num = masked_l1(fitted(x_gen).float(), fitted(x_gt).float(), mask)
    den = masked_l1(x_gen, x_gt, mask)
    return torch.where(den > 1e-6, num / den.clamp_min(1e-6), torch.full_like(num, float("nan"))), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.amplification", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", required=True)
    parser.add_argument("--degrees", default="2,6,10")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    from evaluation.sets import EvalInputError, families_of, load_set

    try:
        records = load_set(args.set, args.limit)
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    decoded = [r.decode() for r in records]
    x_gen, mask, x_gt = (torch.stack([d[k] for d in decoded]) for k in ("x_gen", "mask", "x_gt"))
    fams = sorted({f for r in records for f in families_of(r)} - {"clean", "boundary.hard", "boundary.feathered"})
    variants = [(d, c) for d in (int(x) for x in args.degrees.split(",")) for c in (False, True)]
    print("| family (n) | " + " | ".join(f"d={d}{' ×ch' if c else ''}" for d, c in variants) + " |")
    print("|---|" + "---:|" * len(variants))
    results, times = {}, {}
    for d, c in variants:
        results[(d, c)], times[(d, c)] = amplification(x_gen, x_gt, mask, d, c)
    for fam in ["all", *fams]:
        idx = [i for i, r in enumerate(records) if fam == "all" or fam in families_of(r)]
        cells = []
        for v in variants:
            vals = results[v][idx]
            vals = vals[~vals.isnan()]
            cells.append(f"{float(vals.median()):.1f}" if len(vals) else "–")
        print(f"| {fam} ({len(idx)}) | " + " | ".join(cells) + " |")
    from pixperfect.losses.tone_map import monomial_exponents

    print("| features | " + " | ".join(str(len(monomial_exponents(d, c))) for d, c in variants) + " |")
    print("| fit ms/img | " + " | ".join(f"{1000 * times[v] / len(records):.1f}" for v in variants) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
