"""Writing an evaluation: results.json / .md / .csv and the contact sheet."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from pixperfect.image_io import to_uint8

# (key, header, format, lower is better)
TABLE1 = [("fid", "FID ↓", "{:.2f}"), ("lpips", "LPIPS ↓", "{:.4f}"), ("l1", "L1 ↓", "{:.4f}"),
          ("psnr", "PSNR ↑", "{:.2f}")]
EXTRA = [("masked_l1", "masked L1 ↓", "{:.4f}"), ("masked_l1_ratio", "× input ↓", "{:.3f}"),
         ("masked_l1_ratio_ci", "95% interval", "interval"), ("masked_psnr", "masked PSNR ↑", "{:.2f}"),
         ("delta_e", "ΔE00 ↓", "{:.2f}"), ("seam", "seam ↓", "{:.4f}"),
         ("bg_mse", "bg MSE ↓", "{:.2e}"), ("kid", "KID ↓", "{:.4f}"), ("clip_t", "CLIP-T ↑", "{:.2f}"),
         ("sec_per_image", "s/img", "{:.3f}")]
FAMILY_COLS = [("masked_l1_ratio", "{:.3f}"), ("masked_l1", "{:.4f}")]


def _fmt(value, fmt: str) -> str:
    if value is None:
        return "–"
    if fmt == "interval":  # (low, high) of evaluation.intervals.ratio_interval
        return f"{value[0]:.3f}–{value[1]:.3f}"
    return fmt.format(value)


def _ratio_cell(v: dict) -> str:
    """A per-family cell: the ratio with its 95% interval, or the absolute masked L1 where the input's is 0."""
    if v["masked_l1_ratio"] is None:
        return _fmt(v["masked_l1"], "{:.4f}")
    ci = v.get("masked_l1_ratio_ci")
    return _fmt(v["masked_l1_ratio"], "{:.3f}") + (f" ({_fmt(ci, 'interval')})" if ci else "")


def above_input(results: dict) -> list[str]:
    """One line per row with a family scored above the input (× input > 1), each family with its
    interval, and marked ``*`` where the whole 95% interval is above 1: harm that another draw of
    edits would very likely show too, not one unlucky image."""
    lines = []
    for row in results["methods"]:
        if row == "input":
            continue
        worse = []
        for fam, per_row in results["families"].items():
            v = per_row[row]
            if v["masked_l1_ratio"] is not None and v["masked_l1_ratio"] > 1.0:
                ci = v.get("masked_l1_ratio_ci")
                worse.append(f"{fam} {_ratio_cell(v)}" + ("*" if ci and ci[0] > 1.0 else ""))
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
                  "In parentheses: the 95% paired bootstrap interval over the family's samples (evaluation/intervals.py); "
                  "it measures the draw of edits, not the spread between training seeds.", "",
                  "| family (n) | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
        for fam, per_row in fams.items():
            n = per_row[rows[0]]["n"]
            lines.append(f"| {fam} ({n}) | " + " | ".join(_ratio_cell(per_row[r]) for r in rows) + " |")
        lines.append("")
        above = above_input(results)
        if above:
            lines += [f"- {line}" for line in above]
            lines += ["- `*`: the whole 95% interval is above 1 (harm beyond the draw of edits)", ""]
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def write_csv(results: dict, path: Path) -> None:
    """One row per method; an interval is two columns, ``KEY_low`` and ``KEY_high``."""
    keys = [k for k, *_ in TABLE1 + EXTRA]
    header = [h for k, _, f in TABLE1 + EXTRA for h in ((f"{k}_low", f"{k}_high") if f == "interval" else (k,))]

    def cells(vals: dict):
        for k, _, f in TABLE1 + EXTRA:
            v = vals.get(k)
            if f == "interval":
                yield from ("", "") if v is None else v
            else:
                yield "" if v is None else v

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", *header])
        for row, vals in results["methods"].items():
            w.writerow([row, *cells(vals)])


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
