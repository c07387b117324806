"""Look at the simulated artifacts.

    python -m simulation.preview --n 16 --out grid.png [hydra overrides, e.g. simulation=demo simulation.texture.p=1]

Writes a labelled grid, one sample per row: x_gt | x_gen | mask | amplified |x_gen − x_gt|,
with the families applied to that row written above it. Photos come from ``--images DIR``
(any folder of images, centre-cropped) or, by default, scikit-image's bundled photos.
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


DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def load_photos(folder: str | None, resolution: int) -> list[torch.Tensor]:
    """Centre-square crops resized to ``resolution`` (3×R×R in [0, 1]) of every image in ``folder``
    (recursive), or of scikit-image's bundled photos when no folder is given."""
    from PIL import Image

    if folder is None:
        import skimage.data

        images = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in DEMO_PHOTOS]
    else:
        exts = {".jpg", ".jpeg", ".png", ".webp"}
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in exts)
        images = [Image.open(p).convert("RGB") for p in files]
    out = []
    for im in images:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous())
    return out


def simulate_rows(images: list[torch.Tensor], simulation, device_simulation, n: int, seed: int,
                  masks: list[torch.Tensor | None] | None = None) -> list[dict]:
    """n simulated samples (cycling over the images), each with the names of the families applied."""
    rows = []
    for i in range(n):
        j = i % len(images)
        g = torch.Generator().manual_seed(seed * 100003 + i)
        out = simulation(images[j], generator=g, mask=None if masks is None else masks[j])
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

    cfg = _compose(args.overrides)
    simulation = instantiate(cfg.simulation)
    device_simulation = instantiate(cfg.device_simulation) if cfg.get("device_simulation") else None
    images = load_photos(args.images, args.resolution)
    if not images:
        print(f"error: no images under {args.images}", file=sys.stderr)
        return 2
    with torch.no_grad():
        rows = simulate_rows(images, simulation, device_simulation, args.n, args.seed)
    grid = render_grid(rows, args.gain)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), grid[:, :, ::-1])
    print(f"wrote {args.out} ({len(rows)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
