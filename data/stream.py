"""Streaming training samples from webdataset shards.

shards → (resampled | shuffled, split by node and worker) → tar samples → shuffle buffer →
decode → random-resized crop → artifact simulation. Corrupt samples and broken tar members
are skipped with a warning and *counted*: each yielded sample carries ``n_skipped``, the
number dropped since the previous one, so the training loop can log an exact running total
across workers.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import webdataset as wds
from torch.utils.data import IterableDataset
from torchvision.transforms.v2 import functional as TF

from data.decode import OPTIONAL_KEYS, CorruptSample, decode_sample
from data.errors import DataError
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

    ``decode_cache`` keeps the last N decoded photos (0 = none). A small photo set drawn over and
    over (the demo's 7 photos, ``cpu_small``'s 48) is decoded once per reader and epoch instead of
    once per crop: decoding the whole photo is 64% of the demo's uncached batch time
    (``python -m evaluation.bench data``). Each reader holds its own cache (a data worker, or the
    training process when ``num_workers`` is 0; workers are not persistent, so theirs starts empty
    each epoch), up to N
    photos at 12 bytes a pixel (16 with a mask) plus their encoded bytes. The validation set and
    previews go through the same processor, so their photos also pass through the cache.
    """

    def __init__(self, resolution: int, simulation: Callable, crop_scale: Sequence[float] = (0.25, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True, use_shard_masks: bool = True,
                 downscale: Sequence[float] | None = None, decode_cache: int = 0):
        if resolution < 16:
            raise ValueError(f"data.resolution must be >= 16; got {resolution}")
        if isinstance(decode_cache, bool) or not isinstance(decode_cache, int) or decode_cache < 0:
            raise ValueError(f"data.decode_cache must be an integer >= 0 (decoded photos kept); got {decode_cache!r}")
        self.decode_cache = decode_cache
        self._decoded: OrderedDict[tuple, dict] = OrderedDict()
        self.resolution = resolution
        self.simulation = simulation
        self.crop_scale = tuple(crop_scale)
        if downscale is not None and not (0 < float(downscale[0]) <= float(downscale[1]) <= 1.0):
            raise ValueError(f"data.downscale must be a [min, max] range within (0, 1]; got {list(downscale)}")
        self.downscale = None if downscale is None else (float(downscale[0]), float(downscale[1]))
        self.crop_ratio = tuple(crop_ratio)
        self.hflip = hflip
        self.use_shard_masks = use_shard_masks

    def _downscale(self, image: torch.Tensor, mask: torch.Tensor | None, g: torch.Generator):
        """Resize the photo by a log-uniform factor in ``downscale`` (raised where the photo would get
        smaller than the crop): the crop then sees the scene at that scale, so a refiner trained at
        crop size r meets the content scales it will see at r…4r."""
        lo, hi = self.downscale
        f = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * float(torch.rand((), generator=g)))
        h, w = image.shape[-2:]
        f = min(1.0, max(f, self.resolution / min(h, w)))
        size = [max(self.resolution, round(h * f)), max(self.resolution, round(w * f))]
        image = TF.resize(image, size, antialias=True).clamp(0.0, 1.0)
        if mask is not None:
            mask = TF.resize(mask, size, interpolation=TF.InterpolationMode.NEAREST)
        return image, mask, f

    def decode(self, raw: dict) -> dict:
        """``decode_sample``, served from the cache of recent photos when one is kept. Keyed by the
        whole raw sample (bytes included), so equal keys from different shards never mix. A hit is
        a deep copy: nothing downstream can change what the cache holds. (``functools.lru_cache``
        cannot key on the raw dict, hence this small LRU.)"""
        if not self.decode_cache:
            return decode_sample(raw)
        ident = tuple(sorted(raw.items()))
        try:
            hash(ident)
        except TypeError:  # an unhashable field: decode without the cache
            return decode_sample(raw)
        sample = self._decoded.get(ident)
        if sample is None:
            sample = decode_sample(raw)  # a corrupt sample raises here and is never cached
            self._decoded[ident] = sample
            if len(self._decoded) > self.decode_cache:
                self._decoded.popitem(last=False)
        else:
            self._decoded.move_to_end(ident)
        return copy.deepcopy(sample)

    def prepare(self, raw: dict, seed: int, random_crop: bool = True):
        """Decode and crop: (sample dict, image 3×R×R, object mask or None, the sample's generator)."""
        sample = self.decode(raw)
        image, mask = sample["image"], sample.get("mask") if self.use_shard_masks else None
        g = torch.Generator().manual_seed(seed)
        h, w = image.shape[-2:]
        if min(h, w) < 8:
            raise CorruptSample(f"sample {sample['key']!r} is {h}×{w}: too small to crop")
        if random_crop and self.downscale is not None:
            image, mask, f = self._downscale(image, mask, g)
            h, w = image.shape[-2:]
            sample["scale"] = f
            top = int(torch.randint(0, h - self.resolution + 1, (1,), generator=g))
            left = int(torch.randint(0, w - self.resolution + 1, (1,), generator=g))
            ch = cw = self.resolution
        elif random_crop:
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
        result["cast"] = torch.tensor("color_shift" in out.get("applied", ()))  # the label a cast gate learns
        result["key"] = sample["key"]
        for k in OPTIONAL_KEYS:  # per sample: ``collate`` fills the gaps with None
            if k in sample:
                result[k] = sample[k]
        return result


class SkipCounter:
    """Counts dropped samples; also serves as a webdataset exception handler (log, count, go on)."""

    def __init__(self, max_warnings: int = 20):
        self.pending = 0
        self.total = 0
        self.max_warnings = max_warnings

    def skip(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.pending += n
        self.total += n
        if self.total - n < self.max_warnings:
            log.warning("skipping %s corrupt sample%s: %s", n, "" if n == 1 else "s", reason)
        elif self.total - n == self.max_warnings:
            log.warning("more corrupt samples skipped; further warnings suppressed (the count is logged)")

    def handler(self, exn: Exception) -> bool:
        self.skip(f"{type(exn).__name__}: {exn}")
        return True

    def take(self) -> int:
        n, self.pending = self.pending, 0
        return n


MANIFEST = "shards.json"  # written by data.make_shards next to its shards: settings + samples per shard


def _local_path(url: str) -> Path | None:
    """The file behind a shard URL, or None for remote/pipe URLs (those are not checked up front)."""
    if url.startswith("pipe:") or "://" in url:
        return None
    return Path(url[len("file:"):] if url.startswith("file:") else url)


def expand_shards(urls, setting: str = "data.train_shards") -> list[str]:
    """Brace-expand ``urls`` and check that the local shards exist: a pattern that matches nothing
    is a ``DataError`` naming it, not an epoch of zero steps."""
    expanded = wds.shardlists.expand_urls(urls) if isinstance(urls, str) else [str(u) for u in urls]
    hint = "expected webdataset .tar shards (make them with `python -m data.make_shards SRC OUT`)"
    if not expanded:
        raise DataError(f"{setting}={urls!r} names no shard; {hint}")
    paths = [(u, _local_path(u)) for u in expanded]
    missing = [u for u, p in paths if p is not None and not p.is_file()]
    if missing:
        raise DataError(f"{setting}={urls!r}: {len(missing)} of {len(expanded)} shards do not exist "
                        f"(first: {missing[0]}); {hint}")
    empty = [u for u, p in paths if p is not None and p.stat().st_size == 0]
    if len(empty) == len(expanded):
        raise DataError(f"{setting}={urls!r}: every shard is empty (0 bytes); {hint}")
    for u in empty:
        log.warning("shard %s is empty (0 bytes): its samples will be counted as skipped", u)
    return expanded


def expected_counts(urls: Sequence[str]) -> dict[str, int]:
    """Samples per shard from the ``shards.json`` manifests beside local shards (when there are any):
    what lets a truncated or empty tar count every sample it lost."""
    counts: dict[str, int] = {}
    manifests: dict[Path, dict] = {}
    for url in urls:
        path = _local_path(url)
        if path is None:
            continue
        folder = path.parent
        if folder not in manifests:
            try:
                manifests[folder] = json.loads((folder / MANIFEST).read_text()).get("shards", {})
            except (OSError, ValueError, AttributeError):
                manifests[folder] = {}
        if path.name in manifests[folder]:
            counts[url] = int(manifests[folder][path.name])
    return counts


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

    Every sample carries ``n_skipped`` (samples dropped since the previous one; with a
    ``shards.json`` manifest a truncated tar counts every sample it lost) and its place in the
    worker's stream (``_worker``, ``_position``, ``_produced``). Fed back through ``resume_from``,
    those places make the next ``__iter__`` continue the epoch exactly where it stopped: the
    shard order and shuffle buffer are replayed without decoding, and every sample's seed depends
    only on (seed, epoch, key, visit), plus (rank, worker) for resampled data with more than one
    reader, so the samples after the resume point are bit-identical.
    """

    def __init__(self, urls, processor: SampleProcessor, resampled: bool = False, shuffle_buffer: int = 1000,
                 epoch_length: int | None = None, seed: int = 0):
        super().__init__()
        self.pattern = urls
        self.urls = expand_shards(urls)
        if resampled and not epoch_length:
            raise DataError("data.resampled=true needs data.epoch_length (samples per epoch per rank)")
        self.processor = processor
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.epoch_length = epoch_length
        self.seed = seed
        self.epoch = 0
        self.expected = expected_counts(self.urls)
        self.resume: dict[int, tuple[int, int]] = {}  # worker → (position, produced) already consumed
        self.next_worker = 0  # the DataLoader worker whose batch came next when the epoch was stopped

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.resume, self.next_worker = {}, 0
        self.epoch = epoch

    def resume_from(self, epoch: int, places: dict[int, tuple[int, int]], next_worker: int = 0) -> None:
        """Continue ``epoch`` after the given (position, produced) per worker on the next ``__iter__``;
        ``next_worker`` restores the DataLoader's round-robin turn (see ``data.datamodule.StreamLoader``)."""
        self.epoch = epoch
        self.resume = {int(w): (int(pos), int(n)) for w, (pos, n) in places.items()}
        self.next_worker = int(next_worker)

    def _shards(self, rank: int, worker: int):
        if self.resampled:
            rng = random.Random(sample_seed(self.seed, self.epoch, rank, worker, "shards"))
            while True:
                yield {"url": rng.choice(self.urls)}
        urls = list(self.urls)
        random.Random(sample_seed(self.seed, self.epoch, "shards")).shuffle(urls)
        yield from wds.split_by_worker(wds.split_by_node({"url": u} for u in urls))

    def _tar_samples(self, shards, counter: SkipCounter):
        """Raw samples shard by shard. A shard that ends early counts what it lost: the manifest's
        count minus the samples it gave, else one per broken tar member. Resampled shards that keep
        giving nothing end the stream instead of spinning forever."""
        barren = 0  # consecutive shards that gave no sample
        for shard in shards:
            errors: list[Exception] = []
            seen = 0
            for raw in wds.tariterators.tarfile_samples([shard], handler=lambda exn: errors.append(exn) or True):
                seen += 1
                yield raw
            url = shard["url"]
            lost = self.expected[url] - seen if url in self.expected else len(errors)
            if lost > 0:
                why = f"{type(errors[0]).__name__}: {errors[0]}" if errors else "fewer samples than its manifest"
                counter.skip(f"{url}: {lost} sample(s) lost ({why})", n=lost)
            barren = barren + 1 if seen == 0 else 0
            if self.resampled and barren >= 3 * len(self.urls) + 10:
                log.error("%d shard draws in a row gave no sample: ending the resampled stream", barren)
                return

    def __iter__(self):
        rank, world, worker, num_workers = wds.utils.pytorch_worker_info()
        counter = SkipCounter()
        samples = self._tar_samples(self._shards(rank, worker), counter)
        if self.shuffle_buffer > 1:
            rng = random.Random(sample_seed(self.seed, self.epoch, rank, worker, "buffer"))
            samples = wds.filters._shuffle(samples, self.shuffle_buffer, min(100, self.shuffle_buffer), rng=rng)
        limit = None
        if self.epoch_length:
            limit = -(-self.epoch_length // max(num_workers, 1))
        start, produced = self.resume.get(worker, (0, 0))
        visits: dict[str, int] = {}
        position = 0
        held = None  # each sample waits for the next, so the last one can also carry the trailing skips
        for raw in samples:
            if limit is not None and produced >= limit:
                break
            position += 1
            key = raw.get("__key__", "")
            visits[key] = visits.get(key, 0) + 1
            if position <= start:  # replaying up to the resume point: already consumed (and counted)
                if position == start:
                    counter.take()
                continue
            # Read once per epoch, a sample's seed needs no worker: the same samples whatever the worker
            # count. Resampled, every worker (and rank) reads every shard: without its place in the seed,
            # the v-th visit of a photo would be the same crop and artifacts in every worker. (One reader
            # alone keeps the seeds it always had, so single-worker figures reproduce as before.)
            place = (rank, worker) if self.resampled and (world > 1 or num_workers > 1) else ()
            try:
                out = self.processor(raw, sample_seed(self.seed, self.epoch, *place, key, visits[key]))
            except (CorruptSample, ValueError, OSError) as exc:
                counter.skip(f"{raw.get('__url__', '?')}:{key}: {exc}")
                continue
            produced += 1
            if held is not None:
                yield held
            out["n_skipped"] = counter.take()
            out.update(_worker=worker, _position=position, _produced=produced)
            held = out
        if held is not None:
            held["n_skipped"] += counter.take()
            held["_position"] = position
            yield held
