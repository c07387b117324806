"""Refine an edited image file.

    python -m pixperfect.refine --checkpoint outputs/demo/refiner --image edit.png --mask mask.png --out refined.png

Any size; RGB, RGBA (alpha dropped) and grayscale inputs; the mask is read as grayscale and
binarised at 0.5 (white = edited). Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


class InputError(Exception):
    """A user-facing problem with the inputs; printed as one line."""


def read_image(path: str, mode: str) -> torch.Tensor:
    """An image file → 1×C×H×W float in [0, 1] (``mode`` "RGB" or "L")."""
    try:
        with Image.open(path) as im:
            im.load()
            if mode == "RGB" and im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)  # transparent pixels → white, as viewers show them
            arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise InputError(f"cannot read {path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as an image: {exc}") from None
    t = torch.from_numpy(arr)
    return (t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]).contiguous()


def refine_file(checkpoint: str, image_path: str, mask_path: str, out_path: str, pool: int = 1,
                device: str = "cpu", seed: int = 0) -> Path:
    image = read_image(image_path, "RGB")
    mask = (read_image(mask_path, "L") > 0.5).float()
    if mask.shape[-2:] != image.shape[-2:]:
        raise InputError(f"mask {mask_path} is {mask.shape[-1]}×{mask.shape[-2]} but image {image_path} is "
                         f"{image.shape[-1]}×{image.shape[-2]} (W×H); they must match")
    from pixperfect.inference import Refiner

    try:
        refiner = Refiner.from_pretrained(checkpoint, device=device)
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise InputError(f"cannot load refiner from {checkpoint}: {str(exc).splitlines()[0]}") from None
    kwargs = {}
    if pool != 1:
        kwargs = {"pool": pool, "generator": torch.Generator(device=device).manual_seed(seed)}
    out = refiner(image, mask, **kwargs)[0]
    arr = (out.permute(1, 2, 0).cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    out_file = Path(out_path)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(arr).save(out_file)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot write {out_file}: {exc}") from None
    return out_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixperfect.refine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="exported refiner folder (config.json + model.safetensors)")
    parser.add_argument("--image", required=True, help="the edited image")
    parser.add_argument("--mask", required=True, help="edit mask, white = edited (binarised at 0.5)")
    parser.add_argument("--out", required=True, help="where to write the refined image")
    parser.add_argument("--pool", type=int, default=1, help="inference-time pooling: number of variants (1 = off)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pooling variants")
    args = parser.parse_args(argv)
    if args.pool < 1:
        print(f"error: --pool must be >= 1; got {args.pool}", file=sys.stderr)
        return 2
    try:
        out = refine_file(args.checkpoint, args.image, args.mask, args.out, args.pool, args.device, args.seed)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
