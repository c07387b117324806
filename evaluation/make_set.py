"""Build a deterministic evaluation set from a folder of photos.

    python -m evaluation.make_set SRC OUT --recipe benchmark --size 256 --seed 0 --autoencoder ../shared/weights/taef2

Recipes:
- ``benchmark``: artifacts written for evaluation (``evaluation/degradations.py``, not
  ``simulation/``): Lab colour casts (uniform, gradient), resampling blur, noise, JPEG, a real
  autoencoder round trip pasted into the edit (``vae_roundtrip``) or left on the whole image
  (``vae_full``: the background was re-decoded too), a biharmonic content band, a mix, each with
  a hard or feathered boundary; and a share of clean samples (``x_gen == x_gt``).
- ``clean``: every sample clean — the do-no-harm check.
- ``simulation``: the training simulation (``configs/simulation/default.yaml``) for in-distribution numbers.

Each photo is centre-cropped to a square and resized to ``--size``. Families are dealt round-robin
in a seeded order, so every family gets its share; each sample's ``json`` records its families.
Output: ``OUT/set-NNNNNN.tar`` webdataset shards (``gen.png``, ``mask.png``, ``gt.png``, ``json``)
and ``OUT/set.json``. A re-run with the same arguments is byte-identical.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation import degradations as D
from pixperfect.metrics import band_px
from pixperfect.utils import stable_seed

RECIPES = ("benchmark", "clean", "simulation")
PHOTO_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
BENCHMARK_FAMILIES = ("clean", "color_uniform", "color_gradient", "texture_blur", "texture_noise", "texture_jpeg",
                      "vae_roundtrip", "vae_full", "content_band", "mixed")
NEEDS_AUTOENCODER = ("vae_roundtrip", "vae_full")


class SetError(ValueError):
    """Bad arguments or inputs, reported as one line."""


def list_photos(src: Path) -> list[Path]:
    if not src.is_dir():
        raise SetError(f"SRC {src} is not a folder of photos")
    photos = sorted(p for p in src.rglob("*") if p.suffix.lower() in PHOTO_EXTS and ".mask." not in p.name
                    and ".gen." not in p.name and ".gt." not in p.name)
    if not photos:
        raise SetError(f"no photos ({', '.join(PHOTO_EXTS)}) under {src}")
    return photos


def square(path: Path, size: int) -> np.ndarray:
    """Centre square crop resized to size×size (Lanczos) → H×W×3 float64 in [0, 1]."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        s = min(im.size)
        left, top = (im.width - s) // 2, (im.height - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.LANCZOS)
        return np.asarray(im, dtype=np.float64) / 255.0


def benchmark_sample(clean: np.ndarray, family: str, rng: np.random.Generator,
                     autoencoder: D.AutoencoderRoundTrip | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x_gen, mask, labels) for one family of the ``benchmark`` recipe."""
    h, w = clean.shape[:2]
    mask = D.polygon_mask(h, w, rng)
    if family == "clean":
        return clean, mask, ["clean"]
    feathered = bool(rng.random() < 0.5)
    sigma = rng.uniform(0.4, 1.0) * band_px(h, w) if feathered else 0.0
    labels = [family, "boundary.feathered" if feathered else "boundary.hard"]
    if family == "vae_full":  # the whole image re-decoded, no paste-back: "latent entanglement"
        return autoencoder(clean), mask, ["vae_full"]
    if family == "vae_roundtrip":
        edit = autoencoder(clean)
    elif family == "mixed":
        edit = D.texture_blur(D.color_gradient(clean, mask, rng), mask, rng)
        if autoencoder is not None:
            edit = autoencoder(edit)
    else:
        edit = D.DEGRADATIONS[family](clean, mask, rng)
    return D.composite(edit, clean, mask, sigma), mask, labels


def simulation_factory(name: str = "default", overrides: list[str] | None = None):
    """A training simulation, composed from ``configs/simulation/NAME.yaml`` with Hydra overrides
    (e.g. ``boundary.p_shift=0``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs" / "simulation"),
                               version_base="1.3"):
        try:
            cfg = compose(config_name=name, overrides=list(overrides or []))
        except Exception as exc:  # unknown config name or bad override: one line, not a Hydra trace
            raise SetError(f"cannot compose simulation {name!r} with {list(overrides or [])}: "
                           f"{str(exc).splitlines()[0]}") from None
    return instantiate(cfg)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    a = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def make_set(src: str | os.PathLike, out: str | os.PathLike, recipe: str = "benchmark", size: int = 256,
             seed: int = 0, per_image: int = 1, autoencoder: str | None = None, limit: int | None = None,
             families: list[str] | None = None, overwrite: bool = False, samples_per_shard: int = 100,
             simulation: str = "default", sim_overrides: list[str] | None = None) -> dict:
    """Write the set; returns its manifest (also written as ``OUT/set.json``)."""
    if recipe not in RECIPES:
        raise SetError(f"--recipe must be one of {', '.join(RECIPES)}; got {recipe!r}")
    if size < 32:
        raise SetError(f"--size must be at least 32; got {size}")
    if per_image < 1:
        raise SetError(f"--per-image must be at least 1; got {per_image}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise SetError(f"--limit must be a whole number of photos ≥ 1 (or unset for all); got {limit}")
    if recipe != "simulation" and (simulation != "default" or sim_overrides):
        raise SetError(f"--simulation and --sim-override choose the training simulation of --recipe simulation; "
                       f"got them with --recipe {recipe}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SetError(f"OUT {out} exists and is not empty; pass --overwrite to replace it")
    photos = list_photos(Path(src))[:limit]

    fams = list(families or (BENCHMARK_FAMILIES if recipe == "benchmark" else [recipe]))
    if recipe == "benchmark":
        bad = set(fams) - set(BENCHMARK_FAMILIES)
        if bad:
            raise SetError(f"unknown families {sorted(bad)}; expected some of {', '.join(BENCHMARK_FAMILIES)}")
    ae = None
    if recipe == "benchmark" and any(f in NEEDS_AUTOENCODER for f in fams):
        if autoencoder is None:
            print(f"warning: no --autoencoder: families {', '.join(NEEDS_AUTOENCODER)} are left out of the set",
                  file=sys.stderr)
            fams = [f for f in fams if f not in NEEDS_AUTOENCODER]
        else:
            try:
                ae = D.AutoencoderRoundTrip(autoencoder)
            except Exception as exc:
                raise SetError(f"cannot load --autoencoder {autoencoder}: {str(exc).splitlines()[0]}") from None
    sim = simulation_factory(simulation, sim_overrides) if recipe == "simulation" else None
    order = np.random.default_rng(stable_seed(seed, "families")).permutation(len(photos) * per_image)

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts: dict[str, int] = {}
    unreadable: list[str] = []
    try:
        n = _write_samples(photos, recipe, size, seed, per_image, fams, order, ae, sim, tmp,
                           samples_per_shard, counts, unreadable)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written set is left; an old OUT is untouched
        raise
    if n == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetError(f"none of the {len(photos)} photos under {src} could be read")
    manifest = {"recipe": recipe, "size": size, "seed": seed, "per_image": per_image, "samples": n,
                "photos": len(photos) - len(unreadable), "unreadable": unreadable, "source": str(src),
                "autoencoder": autoencoder if ae is not None else None, "families": dict(sorted(counts.items()))}
    (tmp / "set.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)  # --overwrite: replaced only once the new set is complete
    os.replace(tmp, out)
    return manifest


def _write_samples(photos, recipe, size, seed, per_image, fams, order, ae, sim, tmp, samples_per_shard, counts,
                   unreadable) -> int:
    """Write every sample into ``tmp``; unreadable photos are skipped, named in ``unreadable``."""
    import torch
    import webdataset as wds

    n = 0
    sink = None
    for i, path in enumerate(photos):
        try:
            clean = square(path, size)
        except (OSError, ValueError, SyntaxError) as exc:
            print(f"warning: skipping unreadable photo {path}: {exc}", file=sys.stderr)
            unreadable.append(path.name)
            continue
        for j in range(per_image):
            key = f"{path.stem}_{j}" if per_image > 1 else path.stem
            key = key.replace(".", "_")
            rng = np.random.default_rng(stable_seed(seed, recipe, key))
            if recipe == "benchmark":
                family = fams[int(order[i * per_image + j]) % len(fams)]
                gen, mask, labels = benchmark_sample(clean, family, rng, ae)
                gt = clean
            elif recipe == "clean":
                mask = D.polygon_mask(size, size, rng)
                gen, gt, labels = clean, clean, ["clean"]
            else:
                g = torch.Generator().manual_seed(stable_seed(seed, "simulation", key))
                s = sim(torch.from_numpy(clean).permute(2, 0, 1).float(), g)
                gen, gt = (s[k].permute(1, 2, 0).double().numpy() for k in ("x_gen", "x_gt"))
                mask = s["mask"][0].numpy() > 0.5
                labels = [a for a in s["applied"] if a != "texture.vae"]  # (no device VAE here)
                if "clean" not in labels and not set(labels) - {"boundary", "paste"}:  # nothing changed the edit
                    labels.append("clean")
            if sink is None or n % samples_per_shard == 0:
                if sink is not None:
                    sink.close()
                sink = wds.TarWriter(str(tmp / f"set-{n // samples_per_shard:06d}.tar"), mtime=0.0)
            meta = {"families": labels, "recipe": recipe, "source": path.name, "size": size, "seed": seed}
            sink.write({"__key__": key, "gen.png": png(gen), "mask.png": png(mask.astype(np.float64)),
                        "gt.png": png(gt), "json": json.dumps(meta, sort_keys=True).encode()})
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
            n += 1
    if sink is not None:
        sink.close()
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.make_set", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="folder of photos (searched recursively)")
    parser.add_argument("out", help="output folder for set-NNNNNN.tar shards and set.json")
    parser.add_argument("--recipe", default="benchmark", choices=RECIPES)
    parser.add_argument("--size", type=int, default=256, help="square side of every sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-image", type=int, default=1, help="samples per photo (different families)")
    parser.add_argument("--autoencoder", default=None,
                        help="TAESD-format folder (e.g. ../shared/weights/taef2) or diffusers AutoencoderKL folder/hub id")
    parser.add_argument("--families", default=None, help="comma-separated subset of the benchmark families")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    parser.add_argument("--simulation", default="default", help="--recipe simulation: configs/simulation/NAME.yaml")
    parser.add_argument("--sim-override", action="append", default=[], metavar="KEY=VALUE",
                        help="--recipe simulation: a Hydra override of that config (repeatable)")
    args = parser.parse_args(argv)
    try:
        manifest = make_set(args.src, args.out, args.recipe, args.size, args.seed, args.per_image, args.autoencoder,
                            args.limit, args.families.split(",") if args.families else None, args.overwrite,
                            simulation=args.simulation, sim_overrides=args.sim_override)
    except SetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
