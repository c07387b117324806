"""What does a trained refiner add to its seam prior? The head's own correction, per family.

    python -m evaluation.head_activity --set SET --refiner demo=outputs/demo/refiner [--refiner NAME=DIR …]

A ``seam_prior`` refiner returns ``clamp(x + (1 + g)·offset + Δ)``: the prior's offset, a learned
gain on it and the head's correction Δ. The masked-L1 tables score all three together. This
separates them over the region those tables score (the mask dilated as ``pixperfect.metrics``
dilates it), per family: Δ's mean and largest magnitude in 8-bit steps, the share of values where
|Δ| reaches half a step, the share of values whose 8-bit rounding Δ changes (against
``clamp(x + (1 + g)·offset)``: what Δ does to a saved image), the mean gain 1 + g over the mask and
its spread between images, the prior's mean magnitude, and Δ's signed mean per channel with the
spread of each image's signed mean between images. A head that changes almost no 8-bit value is, in
the files the refiner writes, its prior with a gain (docs/learning_diagnostics.md, "What the head
adds"); one whose signed Δ is the same on every image and family applies one learned colour shift
to every edit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from evaluation.evaluate import batches, stack_records
from evaluation.sets import EvalInputError, Record, families_of, load_set
from pixperfect.metrics.image import edit_region
from pixperfect.models.refiner import RefinerParts

STEP = 1.0 / 255.0  # one 8-bit step
COLUMNS = ("n", "mean \\|Δ\\|", "max \\|Δ\\|", "\\|Δ\\| ≥ ½ step", "8-bit values Δ changes", "gain", "gain sd (images)",
           "mean \\|offset\\|", "signed Δ R/G/B", "signed Δ sd (images)")
_SUMS = ("delta_sum", "visible", "flipped", "values", "offset_sum")


@torch.no_grad()
def sample_activity(model, x: torch.Tensor, mask: torch.Tensor) -> list[dict[str, float | None]]:
    """Per sample of a batch: sums over the scored region (``delta_sum`` in [0, 1] units, ``visible``
    and ``flipped`` counts, ``values`` = 3 × region pixels, ``offset_sum``), ``delta_max`` and the mean
    gain over the mask (None without ``seam_gain``); ``offset_sum`` is None without ``seam_prior``."""
    weight = next(model.parameters())  # the model may sit on a GPU (a training callback); the records on the CPU
    parts = model.forward_parts(x.to(weight.device, weight.dtype), mask.to(weight.device, weight.dtype))
    parts = RefinerParts(*(None if t is None else t.detach().cpu() for t in parts))
    x = x.double()
    region = edit_region(mask).double()  # N×1×H×W, 0/1
    inside = (mask > 0.5).double()
    delta = parts.delta.double()
    scaled = 0.0 if parts.offset is None else parts.offset.double() * (1.0 if parts.scale is None else parts.scale.double())
    before = (x + scaled).clamp(0.0, 1.0)
    after = (x + scaled + delta).clamp(0.0, 1.0)
    flipped = (torch.round(before * 255.0) != torch.round(after * 255.0)).double()
    out = []
    for j in range(x.shape[0]):
        r, m = region[j], inside[j]
        pixels = float(r.sum())
        row = {"delta_sum": float((delta[j].abs() * r).sum()), "visible": float(((delta[j].abs() >= 0.5 * STEP) * r).sum()),
               "flipped": float((flipped[j] * r).sum()), "values": 3.0 * pixels,
               "signed": [float(v) for v in (delta[j] * r).sum(dim=(1, 2))],
               "delta_max": float((delta[j].abs() * r).max()) if pixels else 0.0, "gain": None, "offset_sum": None}
        if parts.scale is not None and float(m.sum()) > 0:
            row["gain"] = float((parts.scale[j].double() * m).sum() / m.sum())
        if parts.offset is not None:
            row["offset_sum"] = float((parts.offset[j].double().abs() * r).sum())
        out.append(row)
    return out


def head_activity(model, records: list[Record], batch_size: int = 8) -> dict[str, dict[str, float | None]]:
    """{"all" | family: {"n", "mean_delta", "max_delta" (8-bit steps), "visible" (share of values with
    |Δ| ≥ ½ step), "flipped" (share of values whose 8-bit rounding Δ changes), "gain" (mean over images
    of the mean 1 + g over the mask), "gain_sd" (its standard deviation between images; both None
    without ``seam_gain``), "mean_offset" (8-bit steps; None without ``seam_prior``), "signed" (Δ's
    signed mean per channel, 8-bit steps), "signed_sd" (the standard deviation between images of each
    image's signed mean over its channels, 8-bit steps)}} for a model with
    ``forward_parts`` (``CMGANRefiner``), over the scored region."""
    if not callable(getattr(model, "forward_parts", None)):
        raise EvalInputError(f"{type(model).__name__} has no forward_parts: only a refiner that returns its parts "
                             "(CMGANRefiner) can be split into prior, gain and head")
    if batch_size < 1:
        raise EvalInputError(f"batch_size must be ≥ 1; got {batch_size}")
    groups: dict[str, list[dict]] = {"all": []}
    for idx in batches(records, batch_size):
        batch = stack_records(records, idx)
        for i, row in zip(idx, sample_activity(model, batch["x_gen"], batch["mask"])):
            for fam in ["all", *families_of(records[i])]:
                groups.setdefault(fam, []).append(row)
    table = {}
    for fam in ["all", *sorted(f for f in groups if f != "all")]:
        rows = groups[fam]
        total = {k: sum(r[k] or 0.0 for r in rows) for k in _SUMS}
        values = max(total["values"], 1.0)
        gains = torch.tensor([r["gain"] for r in rows if r["gain"] is not None], dtype=torch.float64)
        signed = torch.tensor([r["signed"] for r in rows], dtype=torch.float64)  # images × 3, sums
        per_pixel = torch.tensor([r["values"] / 3.0 for r in rows], dtype=torch.float64)
        image_means = signed.sum(dim=1) / (3.0 * per_pixel).clamp_min(1.0) / STEP
        table[fam] = {"n": len(rows), "mean_delta": total["delta_sum"] / values / STEP,
                      "max_delta": max(r["delta_max"] for r in rows) / STEP,
                      "visible": total["visible"] / values, "flipped": total["flipped"] / values,
                      "gain": float(gains.mean()) if len(gains) else None,
                      "gain_sd": float(gains.std(unbiased=False)) if len(gains) else None,
                      "mean_offset": (total["offset_sum"] / values / STEP
                                      if any(r["offset_sum"] is not None for r in rows) else None),
                      "signed": [float(v) for v in signed.sum(dim=0) / max(float(per_pixel.sum()), 1.0) / STEP],
                      "signed_sd": float(image_means.std(unbiased=False))}
    return table


def format_table(name: str, table: dict[str, dict[str, float | None]]) -> str:
    def cell(v, fmt):
        return "–" if v is None else format(v, fmt)

    lines = [f"| {name}: family | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for fam, r in table.items():
        lines.append(f"| {fam} | {r['n']} | {r['mean_delta']:.3f} | {r['max_delta']:.3f} | {r['visible']:.5f} | "
                     f"{r['flipped']:.5f} | {cell(r['gain'], '.3f')} | {cell(r['gain_sd'], '.4f')} | "
                     f"{cell(r['mean_offset'], '.3f')} | {'/'.join(f'{v:+.2f}' for v in r['signed'])} | "
                     f"{r['signed_sd']:.3f} |")
    return "\n".join(lines)


def named_folder(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER (an exported refiner); got {text!r}")
    return name, folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.head_activity", description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True, help="an evaluation set (make_set output, shards or a folder)")
    parser.add_argument("--refiner", type=named_folder, action="append", required=True,
                        help="NAME=FOLDER of an exported refiner; repeat for several")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size takes a value ≥ 1")
    from pixperfect.inference import Refiner

    try:
        for name, folder in args.refiner:
            if not Path(folder).is_dir():
                raise EvalInputError(f"refiner {name!r}: {folder} is not a folder (expected an exported refiner)")
        records = load_set(args.set, args.limit)
        refiners = {}
        for name, folder in args.refiner:
            try:
                refiners[name] = Refiner.from_pretrained(folder)
            except Exception as exc:  # noqa: BLE001 — any load failure is one line for the user
                raise EvalInputError(f"refiner {name!r}: cannot load {folder}: {str(exc).splitlines()[0]}") from None
        print("Over the scored region (the dilated mask), in 8-bit steps (1/255): the head's correction Δ, the share "
              "of values where it reaches half a step and of those whose 8-bit rounding it changes, the gain on the "
              "prior's offset (mean over the mask; mean and spread between images) and the offset's size.\n")
        for name, refiner in refiners.items():
            print(format_table(name, head_activity(refiner.model, records, args.batch_size)) + "\n", flush=True)
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
