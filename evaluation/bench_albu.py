"""Hand-written CPU texture ops vs their albumentations versions (simulation/ops/albu.py): img/s
on one core at 512², per op, and the ratio albumentations / hand-written (> 1: albumentations faster).

    python -m evaluation.bench_albu                 # 512², scikit-image's bundled photos
    python -m evaluation.bench_albu --resolution 256 --repeats 3

Prints one JSON line per op.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


def photos(resolution: int) -> list[torch.Tensor]:
    """scikit-image's bundled colour photos, centre-cropped square and resized to ``resolution``."""
    import cv2
    from skimage import data

    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        img = getattr(data, name)()[..., :3]
        s = min(img.shape[:2])
        y, x = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
        img = cv2.resize(img[y:y + s, x:x + s], (resolution, resolution), interpolation=cv2.INTER_AREA)
        out.append(torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous())
    return out


def ops():
    """name → (hand-written op, albumentations op), each ``f(image, generator) -> image``."""
    from simulation.ops import albu, texture

    def hand_noise(x, g, s=0.02):
        return (x + s * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)

    return {
        "jpeg_q60": (lambda x, g: texture.jpeg(x, 60), lambda x, g: albu.jpeg(x, 60, g)),
        "gauss_noise_0.02": (hand_noise, lambda x, g: albu.gauss_noise(x, 0.02, g)),
        "gaussian_blur_1.0": (lambda x, g: texture.gaussian_blur(x, 1.0), lambda x, g: albu.gaussian_blur(x, 1.0, g)),
    }


def img_per_s(fn, images, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    fn(images[0], g)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in images:
            fn(x, g)
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def main(argv: list[str] | None = None) -> int:
    import cv2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.resolution < 8 or args.repeats < 1:
        print("error: --resolution must be >= 8 and --repeats >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # one simulation worker per core: measure one core
    cv2.setNumThreads(1)
    images = photos(args.resolution)
    for name, (hand, albu_op) in ops().items():
        h, a = img_per_s(hand, images, args.repeats), img_per_s(albu_op, images, args.repeats)
        print(json.dumps({"bench": "albu", "op": name, "resolution": args.resolution, "hand_img_s": round(h, 1),
                          "albu_img_s": round(a, 1), "albu_over_hand": round(a / h, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
