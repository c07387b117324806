"""Pack a folder of images into webdataset shards.

    python -m data.make_shards SRC_DIR OUT_DIR --maxcount 1000

Recursive, deterministic (sorted relative paths; shard i always holds files
[i·maxcount, (i+1)·maxcount)), with a progress bar, and resumable: each shard is written to
a temporary file and renamed when complete, so a re-run skips finished shards and rewrites
only the unfinished one. Image bytes are stored as they are (no re-encoding). Sidecars next
to an image are packed with it: ``NAME.mask.png`` (object mask, white = edit region) and
``NAME.txt`` (caption). Every image is decoded first: files that cannot be (0-byte, truncated,
not an image) are skipped, counted and listed. ``OUT/shards.json`` records the settings, the
samples per shard (so training counts every sample a damaged shard loses) and the skipped files;
re-running into a folder made with other settings is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import webdataset as wds
from tqdm import tqdm

from data.decode import CorruptSample, decode_sample
from data.errors import DataError
from data.stream import MANIFEST

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


def unusable_reason(src: Path, path: Path) -> str | None:
    """Why ``path`` (with its sidecars) cannot become a training sample, or None: the image and mask
    must decode completely (0-byte, truncated and non-image files do not), the caption be UTF-8."""
    try:
        sample = make_sample(src, path)
        decode_sample(sample)
    except UnicodeDecodeError as exc:
        return f"caption is not UTF-8 ({exc.reason})"
    except (CorruptSample, OSError, ValueError) as exc:
        return str(exc)
    return None


def manifest_settings(src: Path, files: list[Path], maxcount: int, prefix: str) -> dict:
    """What decides the shards' contents: a folder made with other settings cannot be resumed."""
    listing = hashlib.sha256()
    for p in files:
        st = p.stat()
        listing.update(f"{p.relative_to(src).as_posix()}\0{st.st_size}\n".encode())
    return {"maxcount": maxcount, "prefix": prefix, "files": len(files), "files_sha256": listing.hexdigest()}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def make_shards(src: str | os.PathLike, out: str | os.PathLike, maxcount: int = 1000, prefix: str = "shard",
                quiet: bool = False, overwrite: bool = False, skip: int = 0) -> list[Path]:
    """Write (or finish writing) the shards; returns their paths.

    Files that cannot be decoded are left out, listed in ``shards.json`` and reported; the
    shards hold only usable samples. A re-run with the same source and settings finishes an
    interrupted run; with other settings it is refused (``DataError``) unless ``overwrite``
    (which deletes the folder's old ``PREFIX-*.tar`` shards first). ``skip`` leaves out the first
    images in sorted order: the ones ``evaluation.make_set --limit N`` holds out for a benchmark.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    if maxcount < 1:
        raise ValueError(f"--maxcount must be >= 1; got {maxcount}")
    if skip < 0:
        raise ValueError(f"--skip must be >= 0; got {skip}")
    candidates = list_images(src)
    if not candidates:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {src}")
    if skip >= len(candidates):
        raise ValueError(f"--skip {skip} leaves none of the {len(candidates)} images under {src}")
    candidates = candidates[skip:]
    keys = [sample_key(src, p) for p in candidates]
    if len(set(keys)) != len(keys):
        raise ValueError("two images map to the same sample key (names differing only in extension or "
                         "punctuation); rename them")
    settings = manifest_settings(src, candidates, maxcount, prefix)
    manifest_path = out / MANIFEST
    existing = sorted(out.glob(f"{prefix}-*.tar")) if out.is_dir() else []
    if manifest_path.is_file() or existing:
        try:
            previous = json.loads(manifest_path.read_text()).get("settings")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous != settings:
            if not overwrite:
                what = (f"maxcount={previous.get('maxcount')}, prefix={previous.get('prefix')!r}, "
                        f"{previous.get('files')} source files" if isinstance(previous, dict)
                        else "no shards.json manifest")
                raise DataError(f"{out} already holds shards made with other settings ({what}; now maxcount="
                                f"{maxcount}, prefix={prefix!r}, {len(candidates)} source files): pass --overwrite "
                                "to replace them, or choose another output folder")
            for p in [*existing, *out.glob(f"{prefix}-*.tar.tmp"), manifest_path]:
                p.unlink(missing_ok=True)

    bad: dict[str, str] = {}
    files = []
    for path in tqdm(candidates, unit="img", disable=quiet, desc=f"checking {src}"):
        reason = unusable_reason(src, path)
        if reason is None:
            files.append(path)
        else:
            bad[path.relative_to(src).as_posix()] = reason
    if not files:
        raise DataError(f"none of the {len(candidates)} images under {src} can be decoded "
                        f"(first: {next(iter(bad.items()))})")

    out.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(files) // maxcount)
    paths = [out / f"{prefix}-{i:06d}.tar" for i in range(n_shards)]
    counts = {p.name: len(files[i * maxcount:(i + 1) * maxcount]) for i, p in enumerate(paths)}
    _write_json(manifest_path, {"settings": settings, "shards": counts, "skipped": bad})
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
    for name, reason in list(bad.items())[:20]:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if bad:
        print(f"skipped {len(bad)} of {len(candidates)} files that cannot be decoded (all listed in "
              f"{manifest_path})", file=sys.stderr)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.make_shards", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="folder of images (searched recursively)")
    parser.add_argument("out", help="output folder for the .tar shards")
    parser.add_argument("--maxcount", type=int, default=1000, help="images per shard")
    parser.add_argument("--prefix", default="shard", help="shard file name prefix")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace shards in OUT made with other settings (otherwise refused)")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N images (sorted by path), e.g. those `evaluation.make_set "
                             "--limit N` holds out")
    args = parser.parse_args(argv)
    try:
        paths = make_shards(args.src, args.out, args.maxcount, args.prefix, overwrite=args.overwrite,
                            skip=args.skip)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(paths)} shards in {args.out}: {paths[0].name} … {paths[-1].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
