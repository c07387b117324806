"""Write evaluation triples (x_gen, mask, x_gt, prompt) as webdataset shards.

    python -m evaluation.generate pilot input.folder=PHOTOS [pilot=sdxl] [pilot.model=DIR] [output.dir=OUT]
    python -m evaluation.generate pilot input.shards='data/val-{000000..000003}.tar'
    python -m evaluation.generate pilot input.folder=COCO_IMAGES input.masks=COCO_MASKS input.mask_inflate=10
    python -m evaluation.generate pilot -m pilot/ablation=none,no_bg_loss,no_sc_loss,no_sbc  # one set each

Each output sample holds ``gen.png`` (the LDM output, what the refiner gets), ``gt.png`` (the
original), ``mask.png`` (white = generated), ``txt`` (the prompt) and ``json`` (seed and
settings). Inputs are sorted (folder) or in shard order; a sample's own ``mask.png``/``txt``
sidecars are used, else a mask is drawn and ``prompt`` is used, seeded by (seed, key) so a
re-run gives the same set. The COCO protocol: ``input.masks`` is a folder of ``KEY.mask.png``
object masks (KEY = the sample key: the file stem, or the shard's ``__key__``) that every sample
must have, and ``input.mask_inflate`` grows each mask by that many pixels (Euclidean, at the
input's resolution) — the paper's inflated segmentation maps. Output shard i holds input
samples [i·n, (i+1)·n): a re-run skips finished shards (written to ``.tmp``, then renamed; a
failure removes the ``.tmp``) and redoes only the unfinished one. Unreadable samples and refused generations are skipped and counted;
impossible settings stop the run before anything is loaded (one line, exit 2).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from data.decode import CorruptSample, decode_sample
from data.stream import SkipCounter
from pixperfect.utils import stable_seed

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ---------------------------------------------------------------------------------------------- inputs
def raw_samples(folder: str | None, shards: str | list[str] | None, skips: SkipCounter) -> Iterator[dict]:
    """Raw webdataset-style samples (bytes per extension) from a folder or from shards."""
    if (folder is None) == (shards is None):
        raise ValueError("set exactly one of input.folder and input.shards")
    if folder is not None:
        from data.make_shards import list_images, make_sample

        src = Path(folder)
        if not src.is_dir():
            raise FileNotFoundError(f"input.folder {src} does not exist")
        files = list_images(src)
        if not files:
            raise FileNotFoundError(f"no images under input.folder {src}")
        for path in files:
            yield make_sample(src, path)
    else:
        import webdataset as wds

        yield from wds.WebDataset(shards, shardshuffle=False, handler=skips.handler, empty_check=False)


def fit(image: torch.Tensor, resolution: int | None, mode: str) -> torch.Tensor:
    """Shorter side → ``resolution`` then a centre square crop (None: unchanged). C×H×W."""
    if resolution is None:
        return image
    h, w = image.shape[-2:]
    s = resolution / min(h, w)
    size = (max(resolution, round(h * s)), max(resolution, round(w * s)))
    kwargs = {"antialias": True} if mode == "bilinear" else {}
    out = F.interpolate(image[None], size=size, mode=mode, **kwargs)[0]
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    return out[:, top: top + resolution, left: left + resolution].clamp(0, 1)


def inflate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A 1×H×W binary mask grown by ``radius`` pixels: every pixel within Euclidean distance
    ``radius`` of the object (the paper's inflated segmentation maps). ``radius`` 0: unchanged."""
    if radius <= 0:
        return (mask > 0.5).float()
    from skimage.morphology import isotropic_dilation

    grown = isotropic_dilation(mask[0].cpu().numpy() > 0.5, radius)
    return torch.from_numpy(grown).float()[None]


def object_mask(key: str, folder: str | os.PathLike, size: tuple[int, int]) -> torch.Tensor:
    """``folder/KEY.mask.png`` as a 1×H×W {0, 1} mask; it must exist and match the image size."""
    from pixperfect.image_io import read_mask

    path = Path(folder) / f"{key}.mask.png"
    if not path.is_file():
        raise CorruptSample(f"no object mask {path} (input.masks needs KEY.mask.png for every sample)")
    try:
        mask = read_mask(path)
    except (OSError, ValueError) as exc:
        raise CorruptSample(f"unreadable object mask {path}: {exc}") from None
    if tuple(mask.shape[-2:]) != tuple(size):
        raise CorruptSample(f"object mask {path} is {tuple(mask.shape[-2:])}, image is {tuple(size)} (H×W)")
    return mask


def png(t: torch.Tensor) -> bytes:
    """C×H×W float [0, 1] → PNG bytes (RGB or L)."""
    arr = (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- writing
def write_eval_set(samples: Iterable[dict], make: Callable[[dict], dict], out_dir: str | os.PathLike,
                   samples_per_shard: int = 100, prefix: str = "eval", skips: SkipCounter | None = None) -> dict:
    """Group raw ``samples`` into shards of ``samples_per_shard`` inputs; ``make(decoded)`` returns
    the output fields of one sample. Finished shards are kept; returns counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    skips = skips or SkipCounter()
    import webdataset as wds

    counts = {"written": 0, "kept": 0, "skipped": 0, "shards": 0}
    it = iter(samples)
    index = 0
    while True:
        chunk = list(islice(it, samples_per_shard))
        if not chunk:
            break
        path = out / f"{prefix}-{index:06d}.tar"
        index += 1
        counts["shards"] += 1
        if path.is_file():
            counts["kept"] += len(chunk)
            continue
        tmp = path.with_suffix(".tar.tmp")
        try:
            with wds.TarWriter(str(tmp), mtime=0.0) as sink:
                for raw in chunk:
                    try:
                        sample = decode_sample(raw)
                        fields = make(sample)
                    except (CorruptSample, ValueError) as exc:  # unreadable input, or a generation it refuses
                        skips.skip(f"{raw.get('__key__', '<unknown>')}: {exc}")
                        continue
                    sink.write({"__key__": sample["key"], **fields})
                    counts["written"] += 1
            os.replace(tmp, path)
        except BaseException:  # an error, Ctrl-C, SIGTERM: no half-written shard stays behind
            tmp.unlink(missing_ok=True)
            raise
    counts["skipped"] = skips.total
    return counts


# ---------------------------------------------------------------------------------------------- pilot
def pilot_maker(cfg) -> Callable[[dict], dict]:
    """The per-sample function for PILOT: load the pipeline once, then inpaint each sample."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from pixperfect.pilot.load import load_pilot
    from pixperfect.pilot.loop import check_settings

    p = cfg.pilot
    call = OmegaConf.to_container(p.call, resolve=True)  # plain lists/dicts: for the pipeline and for json
    check_settings(call, {k: f"pilot.call.{k}" for k in call})  # before loading anything
    inflation = cfg.input.get("mask_inflate", 0)
    if not isinstance(inflation, int) or isinstance(inflation, bool) or inflation < 0:
        raise ValueError(f"input.mask_inflate must be an integer number of pixels ≥ 0; got {inflation!r}")
    masks_dir = cfg.input.get("masks")
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise FileNotFoundError(f"input.masks {masks_dir} does not exist (a folder of KEY.mask.png)")
    pipe = load_pilot(p.model, device=p.device, dtype=p.dtype, controlnet=p.controlnet, adapter=p.adapter,
                      lora=p.lora, lora_scale=p.lora_scale, ip_adapter=p.ip_adapter, ip_adapter_scale=p.ip_adapter_scale)
    masks = instantiate(cfg.masks)
    settings = {"generator": "pilot", "model": str(p.model), "variant": p.get("variant", ""), "seed": int(cfg.seed),
                "mask_inflate": inflation, **call}

    def make(sample: dict) -> dict:
        seed = stable_seed(cfg.seed, sample["key"])
        image = fit(sample["image"], p.resolution, "bilinear")
        source = object_mask(sample["key"], masks_dir, sample["image"].shape[-2:]) if masks_dir else sample.get("mask")
        if source is not None:
            mask = (fit(inflate(source, inflation), p.resolution, "nearest") > 0.5).float()
        else:
            mask = masks(*image.shape[-2:], torch.Generator().manual_seed(seed))
        prompt = sample.get("caption", cfg.prompt) or ""
        generator = torch.Generator(device=pipe.device).manual_seed(seed)
        gen = pipe(prompt, image[None], mask[None], generator=generator, output_type="pt", **call).images[0]
        return {"gen.png": png(gen), "gt.png": png(image), "mask.png": png(mask), "txt": prompt,
                "json": json.dumps({**settings, "sample_seed": seed}, sort_keys=True)}

    return make


def generate_pilot(cfg) -> dict:
    skips = SkipCounter()
    samples = raw_samples(cfg.input.folder, cfg.input.shards, skips)
    if cfg.input.limit is not None:
        samples = islice(samples, int(cfg.input.limit))
    counts = write_eval_set(samples, pilot_maker(cfg), cfg.output.dir, cfg.output.samples_per_shard,
                            prefix=cfg.pilot.name, skips=skips)
    print(json.dumps({"output": str(cfg.output.dir), **counts}))
    return counts


GENERATORS = {"pilot": generate_pilot}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in GENERATORS:
        print(f"usage: python -m evaluation.generate {{{','.join(GENERATORS)}}} [hydra overrides]", file=sys.stderr)
        return 2
    name = sys.argv.pop(1)
    import hydra

    @hydra.main(config_path=str(CONFIGS), config_name="generate", version_base="1.3")
    def run(cfg) -> None:
        try:
            GENERATORS[name](cfg)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
