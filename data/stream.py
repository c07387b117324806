"""Streaming training samples from webdataset shards.

shards → (resampled | shuffled, split by node and worker) → tar samples → shuffle buffer →
decode → random-resized crop → artifact simulation. Corrupt samples and broken tar members
are skipped with a warning and *counted*: each yielded sample carries ``n_skipped``, the
number dropped since the previous one, so the training loop can log an exact running total
across workers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

import torch
import webdataset as wds
from torch.utils.data import IterableDataset
from torchvision.transforms.v2 import functional as TF

from data.decode import CorruptSample, decode_sample
from pixperfect.utils import stable_seed as sample_seed

log = logging.getLogger(__name__)


def random_resized_crop_params(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                               generator: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop sampling, driven by an explicit generator."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio, dtype=torch.float64))
    for _ in range(10):
        target_area = area * float(torch.empty(1, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator))
        aspect = float(torch.exp(torch.empty(1, dtype=torch.float64).uniform_(float(log_ratio[0]), float(log_ratio[1]),
                                                                              generator=generator)))
        w = int(round((target_area * aspect) ** 0.5))
        h = int(round((target_area / aspect) ** 0.5))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            j = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return i, j, h, w
    side = min(height, width)  # fallback: central square
    return (height - side) // 2, (width - side) // 2, side, side


class SampleProcessor:
    """Decode one raw sample, crop it to ``resolution`` and simulate artifacts on it.

    Deterministic: the output is a pure function of the raw sample and ``seed``.
    """

    def __init__(self, resolution: int, simulation: Callable, crop_scale: Sequence[float] = (0.25, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True, use_shard_masks: bool = True):
        if resolution < 16:
            raise ValueError(f"data.resolution must be >= 16; got {resolution}")
        self.resolution = resolution
        self.simulation = simulation
        self.crop_scale = tuple(crop_scale)
        self.crop_ratio = tuple(crop_ratio)
        self.hflip = hflip
        self.use_shard_masks = use_shard_masks

    def prepare(self, raw: dict, seed: int, random_crop: bool = True):
        """Decode and crop: (sample dict, image 3×R×R, object mask or None, the sample's generator)."""
        sample = decode_sample(raw)
        image, mask = sample["image"], sample.get("mask") if self.use_shard_masks else None
        g = torch.Generator().manual_seed(seed)
        h, w = image.shape[-2:]
        if min(h, w) < 8:
            raise CorruptSample(f"sample {sample['key']!r} is {h}×{w}: too small to crop")
        if random_crop:
            top, left, ch, cw = random_resized_crop_params(h, w, self.crop_scale, self.crop_ratio, g)
        else:
            side = min(h, w)
            top, left, ch, cw = (h - side) // 2, (w - side) // 2, side, side
        size = [self.resolution, self.resolution]
        image = TF.resized_crop(image, top, left, ch, cw, size, antialias=True).clamp(0.0, 1.0)
        if mask is not None:
            mask = TF.resized_crop(mask, top, left, ch, cw, size, interpolation=TF.InterpolationMode.NEAREST)
            if mask.sum() == 0:
                mask = None  # the object fell outside the crop: draw a synthetic mask instead
        if random_crop and self.hflip and bool(torch.rand((), generator=g) < 0.5):
            image = image.flip(-1)
            mask = None if mask is None else mask.flip(-1)
        return sample, image, mask, g

    def __call__(self, raw: dict, seed: int, random_crop: bool = True) -> dict:
        sample, image, mask, g = self.prepare(raw, seed, random_crop)
        out = self.simulation(image, generator=g, mask=mask)
        result = {k: out[k] for k in ("x_gt", "x_gen", "mask", "alpha", "vae")}
        result["key"] = sample["key"]
        if "caption" in sample:
            result["caption"] = sample["caption"]
        return result


class SkipCounter:
    """Counts dropped samples; also serves as a webdataset exception handler (log, count, go on)."""

    def __init__(self, max_warnings: int = 20):
        self.pending = 0
        self.total = 0
        self.max_warnings = max_warnings

    def skip(self, reason: str) -> None:
        self.pending += 1
        self.total += 1
        if self.total <= self.max_warnings:
            log.warning("skipping corrupt sample: %s", reason)
        elif self.total == self.max_warnings + 1:
            log.warning("more corrupt samples skipped; further warnings suppressed (the count is logged)")

    def handler(self, exn: Exception) -> bool:
        self.skip(f"{type(exn).__name__}: {exn}")
        return True

    def take(self) -> int:
        n, self.pending = self.pending, 0
        return n


class ShardStream(IterableDataset):
    """An iterable over processed training samples from webdataset shards.

    Args:
        urls: brace-notation string or list of shard URLs/paths.
        processor: decode + crop + simulate (``SampleProcessor``).
        resampled: draw shards with replacement forever (multi-node friendly; needs
            ``epoch_length``); otherwise every shard is read once per epoch, split across
            nodes and workers so no sample is seen twice in an epoch.
        shuffle_buffer: size of the sample shuffle buffer (0 = no shuffling).
        epoch_length: samples per epoch per rank (all workers together); required when resampled.
        seed: base seed; the epoch (``set_epoch``) and the sample key are mixed in.
    """

    def __init__(self, urls, processor: SampleProcessor, resampled: bool = False, shuffle_buffer: int = 1000,
                 epoch_length: int | None = None, seed: int = 0):
        super().__init__()
        self.urls = wds.shardlists.expand_urls(urls) if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError(f"no shards found in {urls!r}")
        if resampled and not epoch_length:
            raise ValueError("data.resampled=true needs data.epoch_length (samples per epoch per rank)")
        self.processor = processor
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.epoch_length = epoch_length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shards(self, rank: int, worker: int):
        if self.resampled:
            rng = random.Random(sample_seed(self.seed, self.epoch, rank, worker, "shards"))
            while True:
                yield {"url": rng.choice(self.urls)}
        urls = list(self.urls)
        random.Random(sample_seed(self.seed, self.epoch, "shards")).shuffle(urls)
        yield from wds.split_by_worker(wds.split_by_node({"url": u} for u in urls))

    def __iter__(self):
        rank, _, worker, num_workers = wds.utils.pytorch_worker_info()
        counter = SkipCounter()
        samples = wds.tariterators.tarfile_samples(self._shards(rank, worker), handler=counter.handler)
        if self.shuffle_buffer > 1:
            rng = random.Random(sample_seed(self.seed, self.epoch, rank, worker, "buffer"))
            samples = wds.filters._shuffle(samples, self.shuffle_buffer, min(100, self.shuffle_buffer), rng=rng)
        limit = None
        if self.epoch_length:
            limit = -(-self.epoch_length // max(num_workers, 1))
        visits: dict[str, int] = {}
        produced = 0
        for raw in samples:
            key = raw.get("__key__", "")
            visits[key] = visits.get(key, 0) + 1
            try:
                out = self.processor(raw, sample_seed(self.seed, self.epoch, key, visits[key]))
            except (CorruptSample, ValueError, OSError) as exc:
                counter.skip(f"{raw.get('__url__', '?')}:{key}: {exc}")
                continue
            out["n_skipped"] = counter.take()
            yield out
            produced += 1
            if limit is not None and produced >= limit:
                break
