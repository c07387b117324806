"""The embedded demo data: scikit-image's bundled colour photographs, written to shards on first use.

Needs no network: the photos ship inside the scikit-image wheel. Two photos are held out for
validation.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from data.datamodule import ShardDataModule

TRAIN_PHOTOS = ("astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "retina",
                "stereo_motorcycle_left", "stereo_motorcycle_right")
VAL_PHOTOS = ("chelsea", "rocket")
MAX_SIDE = 512  # stored downscaled: decoding 1411² PNGs would starve a single CPU data worker


def _photo(name: str) -> np.ndarray:
    import skimage.data

    if name.startswith("stereo_motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(skimage.data, name)()


def stored_photo(name: str) -> Image.Image:
    """A demo photo as the shards hold it: RGB, longest side at most ``MAX_SIDE``."""
    im = Image.fromarray(_photo(name)).convert("RGB")
    im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return im


def write_demo_photos(folder: str | os.PathLike, split: str = "train", as_stored: bool = True) -> list[str]:
    """Write one split's photos as ``NAME.png`` under ``folder`` if absent; return the names written.

    ``as_stored``: as the shards hold them (longest side ``MAX_SIDE``: a set of the *training*
    photos then measures memory, not generalisation); false: at scikit-image's full size (the
    demo's closing benchmark set is made from those)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val'; got {split!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TRAIN_PHOTOS if split == "train" else VAL_PHOTOS:
        path = folder / f"{name}.png"
        if not path.is_file():
            (stored_photo(name) if as_stored else Image.fromarray(_photo(name)).convert("RGB")).save(path)
            written.append(name)
    return written


def write_demo_shards(cache_dir: str | os.PathLike) -> tuple[str, str]:
    """Write ``train-000000.tar`` and ``val-000000.tar`` under ``cache_dir`` if absent; return their paths."""
    import webdataset as wds

    root = Path(cache_dir) / "demo_shards"
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, names in (("train", TRAIN_PHOTOS), ("val", VAL_PHOTOS)):
        path = root / f"{split}-000000.tar"
        if not path.is_file():
            tmp = path.with_suffix(".tar.tmp")
            with wds.TarWriter(str(tmp), mtime=0.0) as sink:  # fixed mtime: byte-reproducible shards
                for name in names:
                    buf = io.BytesIO()
                    stored_photo(name).save(buf, format="PNG")
                    sink.write({"__key__": name, "png": buf.getvalue()})
            os.replace(tmp, path)
        paths.append(str(path))
    return paths[0], paths[1]


def demo_datamodule(cache_dir: str, **kwargs) -> ShardDataModule:
    """A ``ShardDataModule`` on the demo shards (written to ``cache_dir`` on first use)."""
    train, val = write_demo_shards(cache_dir)
    return ShardDataModule(train_shards=train, val_shards=val, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """``python -m data.demo OUT``: the training photos, as the training shards hold them."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m data.demo",
                                     description="Write the demo's training photos (as its shards hold them) to a "
                                                 "folder, e.g. for a make_set set that measures memory. The held-out "
                                                 "photos are written by the demo's closing evaluation.")
    parser.add_argument("out", help="folder to write NAME.png into")
    args = parser.parse_args(argv)
    try:
        written = write_demo_photos(args.out, "train")
    except OSError as exc:  # OUT is a file, or not writable
        print(f"error: cannot write the photos to {args.out}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} of the {len(TRAIN_PHOTOS)} training photos to {args.out} (the rest were there)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
