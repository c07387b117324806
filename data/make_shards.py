"""Pack a folder of images into webdataset shards.

    python -m data.make_shards SRC_DIR OUT_DIR --maxcount 1000

Recursive, deterministic (sorted relative paths; shard i always holds files
[i·maxcount, (i+1)·maxcount)), with a progress bar, and resumable: each shard is written to
a temporary file and renamed when complete, so a re-run skips finished shards and rewrites
only the unfinished one. Image bytes are stored as they are (no re-encoding). Sidecars next
to an image are packed with it: ``NAME.mask.png`` (object mask, white = edit region) and
``NAME.txt`` (caption).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import webdataset as wds
from tqdm import tqdm

IMAGE_EXTS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}


def list_images(src: Path) -> list[Path]:
    """Every image under ``src`` (recursive), sorted by relative path, sidecar masks excluded."""
    files = [p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
             and not p.name.lower().endswith((".mask.png", ".mask.jpg"))]
    return sorted(files, key=lambda p: p.relative_to(src).as_posix())


def sample_key(src: Path, path: Path) -> str:
    """A webdataset-safe key from the relative path (no dots: they separate extensions)."""
    rel = path.relative_to(src).with_suffix("").as_posix()
    return re.sub(r"[^A-Za-z0-9_\-]", "_", rel)


def make_sample(src: Path, path: Path) -> dict:
    sample = {"__key__": sample_key(src, path), IMAGE_EXTS[path.suffix.lower()]: path.read_bytes()}
    stem = path.with_suffix("")
    for ext in (".mask.png", ".mask.jpg"):
        mask = Path(str(stem) + ext)
        if mask.is_file():
            sample[ext[1:]] = mask.read_bytes()
            break
    caption = Path(str(stem) + ".txt")
    if caption.is_file():
        sample["txt"] = caption.read_text(encoding="utf-8").strip()
    return sample


def make_shards(src: str | os.PathLike, out: str | os.PathLike, maxcount: int = 1000, prefix: str = "shard",
                quiet: bool = False) -> list[Path]:
    """Write (or finish writing) the shards; returns their paths."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    if maxcount < 1:
        raise ValueError(f"--maxcount must be >= 1; got {maxcount}")
    files = list_images(src)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {src}")
    keys = [sample_key(src, p) for p in files]
    if len(set(keys)) != len(keys):
        raise ValueError("two images map to the same sample key (names differing only in extension or "
                         "punctuation); rename them")
    out.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(files) // maxcount)
    paths = [out / f"{prefix}-{i:06d}.tar" for i in range(n_shards)]
    todo = [i for i, p in enumerate(paths) if not p.is_file()]
    bar = tqdm(total=len(files), initial=len(files) - sum(len(files[i * maxcount:(i + 1) * maxcount]) for i in todo),
               unit="img", disable=quiet, desc=f"shards → {out}")
    for i in todo:
        tmp = paths[i].with_suffix(".tar.tmp")
        with wds.TarWriter(str(tmp), mtime=0.0) as sink:  # fixed mtime: byte-reproducible shards
            for path in files[i * maxcount:(i + 1) * maxcount]:
                sink.write(make_sample(src, path))
                bar.update(1)
        os.replace(tmp, paths[i])
    bar.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.make_shards", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="folder of images (searched recursively)")
    parser.add_argument("out", help="output folder for the .tar shards")
    parser.add_argument("--maxcount", type=int, default=1000, help="images per shard")
    parser.add_argument("--prefix", default="shard", help="shard file name prefix")
    args = parser.parse_args(argv)
    try:
        paths = make_shards(args.src, args.out, args.maxcount, args.prefix)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(paths)} shards in {args.out}: {paths[0].name} … {paths[-1].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
