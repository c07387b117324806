"""Writing an evaluation: results.json / .md / .csv and the contact sheet."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from evaluation.intervals import LEVEL, MIN_EDITS
from pixperfect.image_io import to_uint8

# (key, header, format, lower is better)
TABLE1 = [("fid", "FID ↓", "{:.2f}"), ("lpips", "LPIPS ↓", "{:.4f}"), ("l1", "L1 ↓", "{:.4f}"),
          ("psnr", "PSNR ↑", "{:.2f}")]
EXTRA = [("masked_l1", "masked L1 ↓", "{:.4f}"), ("masked_l1_ratio", "× input ↓", "{:.3f}"),
         ("masked_l1_ratio_ci", f"{LEVEL:.0%} interval", "{:.3f}–{:.3f}"), ("masked_psnr", "masked PSNR ↑", "{:.2f}"),
         ("delta_e", "ΔE00 ↓", "{:.2f}"), ("seam", "seam ↓", "{:.4f}"),
         ("bg_mse", "bg MSE ↓", "{:.2e}"), ("kid", "KID ↓", "{:.4f}"), ("clip_t", "CLIP-T ↑", "{:.2f}"),
         ("sec_per_image", "s/img", "{:.3f}")]


def _fmt(value, fmt: str) -> str:
    """A value, or an interval (low, high) through a two-field format; ``–`` for None."""
    if value is None:
        return "–"
    return fmt.format(*value) if isinstance(value, (list, tuple)) else fmt.format(value)


def flat_row(row: dict) -> dict:
    """A results row with each interval (low, high) as two entries ``KEY_low`` / ``KEY_high`` (None
    when undefined): for CSV and W&B tables, whose cells hold one number."""
    out = {}
    for k, v in row.items():
        if k.endswith("_ci"):
            out[f"{k}_low"], out[f"{k}_high"] = (None, None) if v is None else v
        else:
            out[k] = v
    return out


def _ratio_cell(v: dict, digits: int = 3) -> str:
    """A per-family cell: the ratio with its interval, or the absolute masked L1 where the input's is 0."""
    if v["masked_l1_ratio"] is None:
        return _fmt(v["masked_l1"], "{:.4f}")
    num = f"{{:.{digits}f}}"
    ci = v.get("masked_l1_ratio_ci")
    return _fmt(v["masked_l1_ratio"], num) + (f" ({_fmt(ci, num + '–' + num)})" if ci else "")


def above_input(results: dict) -> list[str]:
    """One line per row with a family scored above the input (× input > 1), to 4 decimals so an
    excess that rounds to 1.000 still shows, each with its interval; marked ``*`` where the family
    holds at least ``MIN_EDITS`` resampled units (edits, or photos) and its whole interval is above 1: harm that another draw of
    edits would likely show too. With fewer edits the interval is about their own range (with 2,
    the two edits' ratios), so no mark."""
    lines = []
    for row in results["methods"]:
        if row == "input":
            continue
        worse = []
        for fam, per_row in results["families"].items():
            v = per_row[row]
            if v["masked_l1_ratio"] is not None and v["masked_l1_ratio"] > 1.0:
                ci = v.get("masked_l1_ratio_ci")
                beyond = ci is not None and ci[0] > 1.0 and v.get("units", v["n"]) >= MIN_EDITS
                worse.append(f"{fam} ({v['n']}) {_ratio_cell(v, 4)}" + ("*" if beyond else ""))
        if worse:
            lines.append(f"`{row}` above the input: " + ", ".join(worse))
    return lines


def markdown(results: dict) -> str:
    methods = results["methods"]
    rows = list(methods)
    s = results["set"]
    lines = [f"# Evaluation: {s['spec']}", "",
             f"{s['samples']} samples" + (f", recipe `{s['recipe']}`" if s.get("recipe") else "")
             + f"; masked metrics on the mask dilated by 1/64 of the short side.", ""]
    for title, cols in (("Table 1 (whole image)", TABLE1), ("Edit region and extras", EXTRA)):
        cols = [c for c in cols if any(methods[r].get(c[0]) is not None for r in rows)
                or c[0] in ("fid", "lpips")]
        lines += [f"## {title}", "", "| method | " + " | ".join(c[1] for c in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        lines += [f"| {r} | " + " | ".join(_fmt(methods[r].get(k), f) for k, _, f in cols) + " |" for r in rows]
        lines.append("")
    fams = results["families"]
    if fams:
        lines += ["## Per family: masked L1 × input (absolute masked L1 where the input's is 0)", "",
                  f"In parentheses: the {LEVEL:.0%} paired bootstrap interval over the family's "
                  + ("photos, each photo's edits resampled together" if results.get("interval_by") == "photo" else "edits")
                  + " (evaluation/intervals.py); it measures the draw of edits, not the spread between training seeds.", "",
                  "| family (n) | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
        for fam, per_row in fams.items():
            n = per_row[rows[0]]["n"]
            lines.append(f"| {fam} ({n}) | " + " | ".join(_ratio_cell(per_row[r]) for r in rows) + " |")
        lines.append("")
        above = above_input(results)
        if above:
            lines += [f"- {line}" for line in above]
            if results.get("interval_by") == "photo":
                lines += [f"- `*`: a family from at least {MIN_EDITS} photos whose whole interval is above 1 (harm beyond "
                          "the draw of photos)", ""]
            else:
                lines += [f"- `*`: a family of at least {MIN_EDITS} edits whose whole interval is above 1 (harm beyond the "
                          "draw of edits; edits of one photo count as independent, so few photos make intervals too "
                          "narrow: interval_by=photo resamples photos)", ""]
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def write_csv(results: dict, path: Path) -> None:
    """One row per method; an interval is two columns, ``KEY_low`` and ``KEY_high``."""
    keys = list(flat_row({k: None for k, *_ in TABLE1 + EXTRA}))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", *keys])
        for row, vals in results["methods"].items():
            flat = flat_row(vals)
            w.writerow([row, *("" if flat.get(k) is None else flat[k] for k in keys)])


def write_results(results: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md", "csv": out_dir / "results.csv"}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["md"].write_text(markdown(results))
    write_csv(results, paths["csv"])
    return paths


def contact_sheet(rows: list[list[torch.Tensor]], labels: list[str], row_titles: list[str], tile: int = 160) -> Image.Image:
    """A grid: one row per sample, one column per image (input | each method | gt), labelled."""
    head = 18
    sheet = Image.new("RGB", (tile * len(labels), head + (tile + head) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(labels):
        draw.text((j * tile + 4, 3), label[:24], fill="black")
    for i, (images, title) in enumerate(zip(rows, row_titles)):
        y = head + i * (tile + head)
        draw.text((4, y + 2), title[:120], fill="black")
        for j, img in enumerate(images):
            im = Image.fromarray(to_uint8(img))
            im.thumbnail((tile, tile))
            sheet.paste(im, (j * tile, y + head))
    return sheet
