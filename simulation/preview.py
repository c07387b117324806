"""Look at the simulated artifacts.

    python -m simulation.preview --n 16 --out grid.png [hydra overrides, e.g. simulation=demo simulation.texture.p=1]

Writes a labelled grid, one sample per row: x_gt | x_gen | mask | amplified |x_gen − x_gt|,
with the families applied to that row written above it. Photos come from ``--images DIR``
(any folder of images) or, by default, the embedded demo photos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("x_gt", "x_gen", "mask", "|diff| x{gain}")


def _compose(overrides: list[str]):
    import os

    from hydra import compose, initialize_config_dir

    os.environ.setdefault("PIXPERFECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def simulate_rows(raw_samples: list[dict], simulation, device_simulation, resolution: int, n: int,
                  seed: int) -> list[dict]:
    """n simulated samples (cycling over the photos), with the names of the families applied."""
    from data.stream import SampleProcessor
    from pixperfect.utils import stable_seed

    processor = SampleProcessor(resolution, simulation)
    rows = []
    for i in range(n):
        raw = raw_samples[i % len(raw_samples)]
        _, image, mask, g = processor.prepare(raw, stable_seed(seed, "preview", i))
        out = simulation(image, generator=g, mask=mask)
        if device_simulation is not None and bool(out["vae"]):
            batch = {k: out[k][None] for k in ("x_gen", "mask", "alpha", "vae")}
            out["x_gen"] = device_simulation(batch)["x_gen"][0]
        rows.append(out)
    return rows


def render_grid(rows: list[dict], gain: float = 4.0, label_height: int = 14) -> np.ndarray:
    """HxWx3 uint8 grid with a caption strip above each row and column titles on top."""
    tiles = []
    r = rows[0]["x_gt"].shape[-1]
    header = np.full((label_height + 4, 4 * (r + 2), 3), 255, np.uint8)
    for j, title in enumerate(COLUMNS):
        cv2.putText(header, title.format(gain=gain), (j * (r + 2) + 2, label_height), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    tiles.append(header)
    for row in rows:
        diff = ((row["x_gen"] - row["x_gt"]).abs() * gain).clamp(0, 1)
        cols = [row["x_gt"], row["x_gen"], row["mask"].expand(3, -1, -1), diff]
        strip = np.full((label_height + 2, 4 * (r + 2), 3), 255, np.uint8)
        cv2.putText(strip, ", ".join(row["applied"]) or "(none)", (2, label_height - 2), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35, (40, 40, 160), 1, cv2.LINE_AA)
        images = [np.pad((c.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8),
                         ((1, 1), (1, 1), (0, 0)), constant_values=255) for c in cols]
        tiles += [strip, np.concatenate(images, axis=1)]
    return np.concatenate(tiles, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulation.preview", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="number of samples (rows)")
    parser.add_argument("--out", default="simulation_preview.png", help="output PNG")
    parser.add_argument("--images", default=None, help="folder of photos (default: the embedded demo photos)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gain", type=float, default=4.0, help="amplification of the |diff| column")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of configs/train.yaml")
    args = parser.parse_args(argv)

    from hydra.utils import instantiate

    from data.make_shards import list_images

    cfg = _compose(args.overrides)
    simulation = instantiate(cfg.simulation)
    device_simulation = instantiate(cfg.device_simulation) if cfg.get("device_simulation") else None
    if args.images:
        files = list_images(Path(args.images))
        if not files:
            print(f"error: no images under {args.images}", file=sys.stderr)
            return 2
        raw = [{"__key__": p.stem, p.suffix.lower().lstrip(".").replace("jpeg", "jpg"): p.read_bytes()} for p in files]
    else:
        import webdataset as wds

        from data.demo import write_demo_shards

        raw = list(wds.WebDataset(list(write_demo_shards(cfg.paths.cache_dir)), shardshuffle=False))
    with torch.no_grad():
        rows = simulate_rows(raw, simulation, device_simulation, args.resolution, args.n, args.seed)
    grid = render_grid(rows, args.gain)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), grid[:, :, ::-1])
    print(f"wrote {args.out} ({len(rows)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
