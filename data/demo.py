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
                    im = Image.fromarray(_photo(name)).convert("RGB")
                    im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
                    im.save(buf, format="PNG")
                    sink.write({"__key__": name, "png": buf.getvalue()})
            os.replace(tmp, path)
        paths.append(str(path))
    return paths[0], paths[1]


def demo_datamodule(cache_dir: str, **kwargs) -> ShardDataModule:
    """A ``ShardDataModule`` on the demo shards (written to ``cache_dir`` on first use)."""
    train, val = write_demo_shards(cache_dir)
    return ShardDataModule(train_shards=train, val_shards=val, **kwargs)
