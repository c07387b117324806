"""How should the seam prior measure the step? Score variants of ``seam_offset`` on a set.

    python -m evaluation.prior_sweep --set eval_sets/cbsd68val_256 --ring 4,32 --shrink 4,8 --compensate 0,1
    python -m evaluation.prior_sweep --set eval_sets/cbsd20_sim_128 --ring 16 --shrink 8 --compensate 1 --oracle-gain
    python -m evaluation.prior_sweep --set eval_sets/cbsd20_bench_128 --ring 16 --shrink 8 --compensate 1 --gain 1,1.2
    python -m evaluation.prior_sweep --set eval_sets/cbsd68val_256 --ring 32 --shrink 6,8 --compensate 1 --shrinkage james_stein,wiener

    python -m evaluation.prior_sweep --set eval_sets/cbsd68val_256 --ring 32 --shrink 6 --compensate 1 --cg 0,0.125,0.25,0.5
    python -m evaluation.prior_sweep --set eval_sets/cbsd68val_256 --ring 32 --shrink 4,6,8,12 --compensate 1 --block 0,4
    python -m evaluation.prior_sweep --set eval_sets/cbsd68val_256 --ring 32 --shrink 6 --compensate 1 --split-boundary

Each variant is the edit plus ``seam_offset(x_gen, mask, ring, shrink, compensate, gap, block)`` (push-pull
fill, then ``--cg`` × the longer side CG iterations, the refiner's ``seam_cg``): exactly what an untrained ``seam_prior`` refiner returns, which has no original to
paste back (the ``seam_offset`` baseline of ``evaluate`` adds the paste-back, like ``membrane``), scored by
``evaluation.evaluate`` like any row: masked L1 ÷ the input's, overall and per family. Pick the
variant on a *validation* set (photos and seed the reported benchmark does not use), then report it
on the benchmark; ``ring`` is given in pixels at the set's size (``seam_offset`` scales its default,
``side // 8``, with the image).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

import torch

from evaluation.evaluate import evaluate, quantized
from evaluation.sets import EvalInputError, families_of, load_set
from pixperfect.metrics import masked_l1
from pixperfect.models.seam_offset import DEFAULT_CG, SHRINKAGES, cg_iterations, seam_offset


def variant(ring: int, shrink: float, compensate: bool, gap: int = 1, gain: float = 1.0, shrinkage: str = "james_stein",
            cg: float = DEFAULT_CG, block: int = 0):
    """An ``evaluate`` method: the edit + gain · the seam offset with these settings (the original
    unused). A constant gain other than 1 is what a refiner that learned one scale for every image
    returns. ``cg``: the fill's CG iterations per px of the longer side (the refiner's ``seam_cg``);
    ``block``: the radius over which the jump's noise is taken to be correlated (0: independent)."""
    def method(x_gen, mask, x_orig, batch_index):
        field = seam_offset(x_gen.float(), mask.float(), ring=ring, shrink=shrink,
                            iterations=cg_iterations(cg, *x_gen.shape[-2:]), compensate=compensate,
                            gap=gap, shrinkage=shrinkage, block=block)
        return (x_gen.float() + gain * field).clamp(0.0, 1.0)
    return method


ORACLE_GAINS = tuple(round(-0.5 + 0.1 * i, 1) for i in range(26))  # -0.5 … 2.0: off, reversed, under/over-shot


def oracle_gain_variant(ring: int, shrink: float, compensate: bool, gap: int = 1, gains=ORACLE_GAINS,
                        shrinkage: str = "james_stein", cg: float = DEFAULT_CG, block: int = 0):
    """The edit + a·offset with, per sample, the gain a that scores best against the target: what a
    refiner that learned one perfect gain per image would reach. It reads the target, so it is an
    upper bound (the headroom of learning a per-image gain on the prior), never a method."""
    def method(x_gen, mask, x_gt, batch_index):
        x_gen = x_gen.float()
        field = seam_offset(x_gen, mask.float(), ring=ring, shrink=shrink, iterations=cg_iterations(cg, *x_gen.shape[-2:]),
                            compensate=compensate, gap=gap, shrinkage=shrinkage, block=block)
        outs = torch.stack([(x_gen + a * field).clamp(0.0, 1.0) for a in gains])  # G×N×3×H×W
        errors = torch.stack([masked_l1(o, x_gt, mask) for o in outs])  # G×N, the metric the table reports
        best = errors.argmin(dim=0)
        return outs[best, torch.arange(x_gen.shape[0])]
    return method


def sweep(records, rings: list[int], shrinks: list[float], compensates: list[bool],
          gaps: list[int] = (1,), oracle_gain: bool = False, gains: list[float] = (1.0,),
          shrinkages: list[str] = ("james_stein",), output_bits: int | None = None,
          cgs: list[float] = (DEFAULT_CG,), blocks: list[int] = (0,)) -> dict[str, dict[str, float]]:
    """{variant name: {"overall" | family: masked-L1 ratio (absolute masked L1 where the input's is 0)}}.
    A gap only changes the jump, so raw-step variants are scored once, without one. ``oracle_gain``
    adds, after each variant, its per-image best-gain upper bound (``oracle_gain_variant``); each of
    ``gains`` scales the offset by that constant (named ``×gain`` where it is not 1). A ``wiener``
    shrinkage is named as such; ``james_stein``, the default, is not. ``output_bits`` scores every
    variant as the image file of that depth (``evaluate``'s ``output_bits``). Each of ``cgs`` is a fill
    (``seam_cg``), named ``cg=…`` where it is not the default; each of ``blocks`` a correlation radius of
    the jump's noise, named ``block=…`` where it is not 0."""
    methods = {"input": lambda g, m, o, i: g}
    for ring, shrink, comp, gap, rule, cg, block in itertools.product(rings, shrinks, compensates, gaps, shrinkages, cgs,
                                                                       blocks):
        if not comp and gap != gaps[0]:
            continue
        name = (f"{'jump' if comp else 'step'} ring={ring} shrink={shrink:g}" + (f" gap={gap}" if comp and gap != 1 else "")
                + (f" {rule}" if rule != "james_stein" else "") + (f" cg={cg:g}" if cg != DEFAULT_CG else "") + (f" block={block}" if block else ""))
        for gain in gains:
            methods[name + (f" ×{gain:g}" if gain != 1 else "")] = variant(ring, shrink, comp, gap if comp else 1, gain,
                                                                            rule, cg, block)
        if oracle_gain:
            methods[name + " oracle gain"] = oracle_gain_variant(ring, shrink, comp, gap if comp else 1, shrinkage=rule,
                                                                 cg=cg, block=block)
    if output_bits is not None:
        methods = {name: quantized(fn, output_bits) for name, fn in methods.items()}
    return sweep_table(records, methods)


def scored(records, methods: dict) -> tuple[list[str], dict]:
    """Run ``evaluate`` on ``methods`` with the ``input`` row (the identity unless given) first, as
    the denominator; returns (the other rows' names in order, ``evaluate``'s results)."""
    methods = {"input": methods.get("input", lambda g, m, o, i: g), **{k: v for k, v in methods.items() if k != "input"}}
    with torch.no_grad():
        results, _ = evaluate(records, methods, progress=False)
    return list(methods)[1:], results


def table_of(results: dict, names: list[str]) -> dict[str, dict[str, float]]:
    """{name: {"overall" | family: masked-L1 ratio (absolute masked L1 where the input's is 0)}}."""
    table = {}
    for name in names:
        row = {"overall": results["methods"][name]["masked_l1_ratio"]}
        for fam, per in sorted(results["families"].items()):
            r = per[name]
            row[fam] = r["masked_l1_ratio"] if r["masked_l1_ratio"] is not None else r["masked_l1"]
        table[name] = row
    return table


def sweep_table(records, methods: dict) -> dict[str, dict[str, float]]:
    """Score ``methods`` (``evaluate`` methods, an ``input`` row first: see ``scored``) into a table."""
    names, results = scored(records, methods)
    return table_of(results, names)


def format_table(table: dict[str, dict[str, float]]) -> str:
    cols = list(next(iter(table.values())))
    lines = ["| variant | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |" for name, row in table.items()]
    return "\n".join(lines)


def split_by_boundary(records: list) -> list:
    """The records with each artifact family split by its sample's boundary (``color_uniform`` →
    ``color_uniform·feathered`` / ``color_uniform·hard``), so a table shows, e.g., whether casts
    behind feathered seams are read at all; families without a boundary label keep their name."""
    out = []
    for rec in records:
        fams = families_of(rec)
        boundary = [f.split(".", 1)[1] for f in fams if f.startswith("boundary.")]
        split = [f"{f}·{boundary[0]}" if boundary and not f.startswith("boundary.") else f for f in fams]
        out.append(dataclasses.replace(rec, meta={**rec.meta, "families": split}))
    return out


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def flags(text: str) -> list[bool]:
    """``0,1`` → [False, True]; anything but 0 or 1 is an error."""
    values = text.split(",")
    if any(v not in ("0", "1") for v in values):
        raise ValueError(text)
    return [v == "1" for v in values]


def shrinkages(text: str) -> list[str]:
    """``james_stein,wiener`` → the list; an unknown rule is an error."""
    values = text.split(",")
    if any(v not in SHRINKAGES for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each rule must be one of {', '.join(SHRINKAGES)}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.prior_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", required=True, help="an evaluation set (make_set output, shards or a folder)")
    parser.add_argument("--ring", type=ints, default=[4, 32], help="comma-separated rings in px (window 4·ring+1)")
    parser.add_argument("--shrink", type=floats, default=[4.0, 6.0, 8.0], help="comma-separated shrinkage strengths")
    parser.add_argument("--compensate", type=flags, default=[False, True],
                        help="comma-separated 0 (raw step) and/or 1 (jump, gradient-compensated)")
    parser.add_argument("--gap", type=ints, default=[1],
                        help="comma-separated distances in px at which the jump is read (1 = next to the seam; "
                             "wider reads feathered seams whole)")
    parser.add_argument("--oracle-gain", action="store_true",
                        help="add each variant's upper bound: the best gain on the offset per image, chosen with "
                             "the target (what learning a per-image gain could reach at most)")
    parser.add_argument("--gain", type=floats, default=[1.0],
                        help="comma-separated constant scales of the offset (1 = the untrained refiner; the best "
                             "constant is what a refiner that learned one scale for all images reaches)")
    parser.add_argument("--shrinkage", type=shrinkages, default=["james_stein"],
                        help="comma-separated rules: james_stein (a jump within the noise is zero; the default) "
                             "and/or wiener (scaled down, never zero: the prior before session 10)")
    parser.add_argument("--output-bits", type=int, default=None,
                        help="score every variant as the image file of this depth (8: rounded to 1/255, what a "
                             "saved 8-bit image keeps); default: the float outputs")
    parser.add_argument("--cg", type=floats, default=[DEFAULT_CG],
                        help=f"comma-separated CG budgets of the fill, iterations per px of the longer side (the "
                             f"refiner's seam_cg; default {DEFAULT_CG}; 0 = push-pull only, the prior before session 15)")
    parser.add_argument("--block", type=ints, default=[0],
                        help="comma-separated radii in px over which the jump's noise is taken to be correlated "
                             "(batch-means standard error; 0 = every crossing independent, the default)")
    parser.add_argument("--split-boundary", action="store_true",
                        help="split each family by its samples' boundary (hard / feathered) in the table")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    if any(r < 0 for r in args.ring) or any(s < 0 for s in args.shrink):
        parser.error("--ring and --shrink take values ≥ 0")
    if any(g < 1 for g in args.gap):
        parser.error("--gap takes values ≥ 1")
    if any(c < 0 for c in args.cg):
        parser.error("--cg takes values ≥ 0")
    if any(b < 0 for b in args.block):
        parser.error("--block takes values ≥ 0")
    try:
        records = load_set(args.set, args.limit)
        if args.split_boundary:
            records = split_by_boundary(records)
        table = sweep(records, args.ring, args.shrink, args.compensate, args.gap, args.oracle_gain, args.gain,
                      args.shrinkage, args.output_bits, args.cg, args.block)
    except EvalInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
