"""Refine edited images: one file, or a whole folder.

    python -m pixperfect.refine --checkpoint DIR --image edit.png --mask mask.png --out refined.png
    python -m pixperfect.refine --checkpoint DIR --images FOLDER_OR_GLOB --masks FOLDER --out FOLDER
    python -m pixperfect.refine --checkpoint DIR --image edit.png --mask mask.png --original photo.png --out refined.png

Any size and bit depth (8/16-bit, RGB, RGBA with alpha dropped, grayscale); masks are read as
grayscale and binarised at half scale (white = edited). In folder mode an image's mask is the
file with the same stem in ``--masks`` (any image extension), or its ``NAME.mask.png`` sidecar;
outputs are ``--out/NAME.png``. Images of one size are refined in batches; an output that
already exists is kept (a re-run resumes); unreadable pairs are skipped and listed at the end
(exit 1); bad arguments print one line and exit 2. Inputs are never overwritten.

``--original`` (``--originals FOLDER`` in folder mode, same stems) gives the unedited image, which
an editing user has: its background is pasted back around the edit before refining and kept outside
the mask (``Refiner(..., original=)``), so a cast spread beyond the mask becomes a seam the refiner's
prior reads (README, "Export and refine").
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections import defaultdict
from pathlib import Path

import torch

from pixperfect.image_io import read_image, read_mask, write_image
from pixperfect.inference.region import REGIONS

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class InputError(Exception):
    """A user-facing problem with the inputs; printed as one line."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _read(path: str | Path, reader) -> torch.Tensor:
    """``reader(path)`` as a batch of one; InputError naming the file when it cannot be read."""
    try:
        return reader(path)[None]
    except FileNotFoundError:
        raise InputError(f"cannot read {path}: no such file") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError ⊂ OSError
        raise InputError(f"cannot read {path} as an image: {_first_line(exc)}") from None


def load_image_and_mask(image_path: str | Path, mask_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(1×3×H×W, 1×1×H×W) in [0, 1]; InputError naming the file when unreadable or mismatched."""
    image, mask = _read(image_path, read_image), _read(mask_path, read_mask)
    if mask.shape[-2:] != image.shape[-2:]:
        raise InputError(f"mask {mask_path} is {mask.shape[-1]}×{mask.shape[-2]} but image {image_path} is "
                         f"{image.shape[-1]}×{image.shape[-2]} (W×H); they must match")
    return image, mask


def resolve_device(device: str) -> torch.device:
    """A torch device that exists here, or InputError saying which one is missing."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device!r} is not a device; expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for, but no CUDA GPU is available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device} asked for, but MPS is not available here; use --device cpu")
    return dev


def load_refiner(checkpoint: str, device: torch.device, **options):
    from pixperfect.inference import Refiner

    try:
        return Refiner.from_pretrained(checkpoint, device=device, **options)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load refiner from {checkpoint}: {_first_line(exc)}") from None


def check_writable(out_file: Path) -> None:
    """InputError when ``out_file``'s folder cannot exist (a file stands in its way)."""
    for parent in [out_file.parent, *out_file.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write {out_file}: {parent} is a file, not a folder")
            break


def write_output(image: torch.Tensor, out_file: Path) -> None:
    try:
        write_image(image, out_file)  # atomic: a temporary name, then renamed
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write {out_file}: {_first_line(exc)}") from None


def load_original(path: str | Path, image: torch.Tensor, image_path: str | Path) -> torch.Tensor:
    """The unedited image (1×3×H×W) at the edit's size; InputError naming the file otherwise."""
    original = _read(path, read_image)
    if original.shape[-2:] != image.shape[-2:]:
        raise InputError(f"original {path} is {original.shape[-1]}×{original.shape[-2]} but image {image_path} is "
                         f"{image.shape[-1]}×{image.shape[-2]} (W×H); they must match")
    return original


def check_original_region(region: str) -> None:
    """An original is kept outside the mask, which ``--region full`` would refine: refuse the pair."""
    if region != "edit":
        raise InputError(f"--original keeps the original outside the mask, so it goes with --region edit; got {region}")


def refine_file(checkpoint: str, image_path: str, mask_path: str, out_path: str, pool: int = 1,
                device: str = "cpu", seed: int = 0, region: str = "edit", original_path: str | None = None) -> Path:
    out_file = Path(out_path)
    inputs = {Path(p).resolve() for p in (image_path, mask_path, original_path) if p is not None}
    if out_file.exists() and out_file.resolve() in inputs:
        raise InputError(f"--out {out_file} is one of the inputs; refusing to overwrite it")
    if original_path is not None:
        check_original_region(region)
    check_writable(out_file)
    dev = resolve_device(device)
    image, mask = load_image_and_mask(image_path, mask_path)
    original = None if original_path is None else load_original(original_path, image, image_path)
    refiner = load_refiner(checkpoint, dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    out = refiner(image, mask, pool=pool, generator=generator, region=region, original=original)[0]
    write_output(out, out_file)
    return out_file


def find_pairs(images: str, masks: str | None) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, mask) pairs from a folder or glob, and one line per image without a mask."""
    src = Path(images)
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    else:
        files = sorted(Path(p) for p in glob.glob(images, recursive=True) if Path(p).suffix.lower() in IMAGE_EXTS)
    files = [p for p in files if p.is_file() and not p.stem.endswith(".mask")]
    mask_index: dict[str, Path] = {}
    if masks is not None:
        for p in sorted(Path(masks).iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                stem = p.stem[: -len(".mask")] if p.stem.endswith(".mask") else p.stem
                mask_index.setdefault(stem, p)
    pairs, missing = [], []
    for f in files:
        m = mask_index.get(f.stem) if masks is not None else f.with_name(f"{f.stem}.mask.png")
        if m is None or not m.is_file():
            missing.append(f"{f}: no mask (expected {Path(masks) / (f.stem + '.png') if masks else m})")
        else:
            pairs.append((f, m))
    return pairs, missing


def find_originals(pairs: list[tuple[Path, Path]], originals: str) -> tuple[dict[Path, Path], list[str]]:
    """Each image's original: the file with its stem in the folder ``originals`` (any image extension)."""
    index: dict[str, Path] = {}
    for p in sorted(Path(originals).iterdir()):
        if p.suffix.lower() in IMAGE_EXTS:
            index.setdefault(p.stem, p)
    found, missing = {}, []
    for image_path, _ in pairs:
        if image_path.stem in index:
            found[image_path] = index[image_path.stem]
        else:
            expected = Path(originals) / f"{image_path.stem}.png"
            missing.append(f"{image_path}: no original (expected {expected} or another image extension)")
    return found, missing


def refine_folder(checkpoint: str, images: str, masks: str | None, out_dir: str, pool: int = 1, device: str = "cpu",
                  seed: int = 0, region: str = "edit", batch_size: int = 4, progress: bool = True,
                  originals: str | None = None) -> dict:
    """Refine every (image, mask) pair; returns counts and the skipped pairs' reasons."""
    from tqdm import tqdm

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; folder mode writes into a folder")
    if masks is not None and not Path(masks).is_dir():
        raise InputError(f"--masks {masks} is not a folder")
    if not Path(images).is_dir() and not glob.glob(images, recursive=True):
        raise InputError(f"--images {images} is neither a folder nor a glob that matches files")
    if originals is not None:
        check_original_region(region)
        if not Path(originals).is_dir():
            raise InputError(f"--originals {originals} is not a folder")
    dev = resolve_device(device)
    pairs, skipped = find_pairs(images, masks)
    if not pairs and not skipped:
        raise InputError(f"--images {images} holds no images ({', '.join(IMAGE_EXTS)})")
    inputs = {p.resolve() for pair in pairs for p in pair}  # never overwritten, whether refined or skipped
    original_of: dict[Path, Path] = {}
    if originals is not None:
        original_of, missing = find_originals(pairs, originals)
        skipped += missing
        pairs = [pair for pair in pairs if pair[0] in original_of]
        inputs |= {p.resolve() for p in original_of.values()}
    todo, kept = [], 0
    for image_path, mask_path in pairs:
        target = out / f"{image_path.stem}.png"
        if target.resolve() in inputs:
            skipped.append(f"{image_path}: its output {target} is an input file; not overwriting it")
        elif target.exists():
            kept += 1  # resumable: a finished output is kept
        else:
            todo.append((image_path, mask_path, target))
    groups: dict[tuple[int, int], list] = defaultdict(list)
    for item in todo:  # batch by size: headers only, pixels are read batch by batch
        try:
            with open_image_header(item[0]) as im:
                groups[(im.height, im.width)].append(item)
        except (OSError, ValueError, SyntaxError) as exc:
            skipped.append(f"{item[0]}: unreadable ({_first_line(exc)})")
    refiner = load_refiner(checkpoint, dev) if any(groups.values()) else None
    done = 0
    with tqdm(total=sum(len(v) for v in groups.values()), unit="img", disable=not progress, file=sys.stderr) as bar:
        for items in groups.values():
            for start in range(0, len(items), batch_size):
                batch, tensors = [], []
                for image_path, mask_path, target in items[start : start + batch_size]:
                    try:
                        image, mask = load_image_and_mask(image_path, mask_path)
                        original = (load_original(original_of[image_path], image, image_path)
                                    if originals is not None else None)
                        tensors.append((image, mask, original))
                        batch.append(target)
                    except InputError as exc:
                        skipped.append(str(exc))
                        bar.update(1)
                if not batch:
                    continue
                image = torch.cat([t[0] for t in tensors])
                mask = torch.cat([t[1] for t in tensors])
                generators = [torch.Generator(device=dev).manual_seed(seed) for _ in batch]
                original = torch.cat([t[2] for t in tensors]) if originals is not None else None
                refined = refiner(image, mask, pool=pool, generator=generators, region=region, original=original)
                for target, img in zip(batch, refined):
                    write_output(img, target)
                    done += 1
                    bar.update(1)
    return {"refined": done, "kept": kept, "skipped": skipped}


def open_image_header(path: Path):
    """The image opened lazily (size known, pixels not decoded)."""
    from PIL import Image

    return Image.open(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixperfect.refine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="exported refiner folder (config.json + model.safetensors)")
    parser.add_argument("--image", help="one edited image (with --mask and --out FILE)")
    parser.add_argument("--mask", help="its edit mask, white = edited (binarised at half scale)")
    parser.add_argument("--images", help="folder or glob of edited images (with --masks FOLDER and --out FOLDER)")
    parser.add_argument("--masks", help="folder of masks named like the images (default: NAME.mask.png beside each)")
    parser.add_argument("--out", required=True, help="output file (--image) or folder (--images)")
    parser.add_argument("--pool", type=int, default=1, help="inference-time pooling: number of variants (1 = off)")
    parser.add_argument("--region", default="edit", choices=REGIONS,
                        help="edit: keep the input outside the dilated, feathered mask (pasted-back edits); "
                             "full: refine everywhere (raw LDM outputs)")
    parser.add_argument("--original", help="one image: the unedited photo (same size); its background is kept "
                                           "outside the mask and the edit refined against it")
    parser.add_argument("--originals", help="folder mode: folder of unedited photos named like the images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4, help="folder mode: images of one size per forward")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pooling variants")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if args.pool < 1:
            raise InputError(f"--pool must be >= 1; got {args.pool}")
        if args.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1; got {args.batch_size}")
        if (args.image is None) == (args.images is None):
            raise InputError("give either --image FILE --mask FILE (one image) or --images FOLDER_OR_GLOB (a folder)")
        if args.image is not None:
            if args.mask is None:
                raise InputError("--image needs --mask (white = edited)")
            if args.originals is not None:
                raise InputError("--originals is for folder mode (--images); with --image give --original FILE")
            out = refine_file(args.checkpoint, args.image, args.mask, args.out, args.pool, args.device, args.seed,
                              args.region, args.original)
            print(f"wrote {out}")
            return 0
        if args.original is not None:
            raise InputError("--original is for one image (--image); in folder mode give --originals FOLDER")
        result = refine_folder(args.checkpoint, args.images, args.masks, args.out, args.pool, args.device, args.seed,
                               args.region, args.batch_size, progress=not args.quiet, originals=args.originals)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    skipped = result["skipped"]
    print(f"refined {result['refined']}, kept {result['kept']} existing, skipped {len(skipped)} → {args.out}")
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
