"""Lightning DataModule over webdataset shards: a streaming train set and a fixed, seeded val set."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import lightning as L
import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset

from data.decode import CorruptSample
from data.errors import DataError
from data.stream import SampleProcessor, ShardStream, SkipCounter, expand_shards, sample_seed

log = logging.getLogger(__name__)


STREAM_PLACE = ("_worker", "_position", "_produced")  # where a sample sits in its worker's stream


def collate(samples: list[dict]) -> dict:
    """Stack tensors, keep strings as lists, sum the skip counts; keys come from *all* samples, so
    an optional sidecar (caption, meta) some samples lack becomes None in their slots. A batch
    keeps the stream place of its last sample (a batch comes from one worker)."""
    keys = list(dict.fromkeys(k for s in samples for k in s))
    batch: dict = {}
    for k in keys:
        values = [s.get(k) for s in samples]
        if k == "n_skipped":
            batch[k] = torch.tensor(sum(v or 0 for v in values))
        elif k in STREAM_PLACE:
            batch[k] = values[-1]
        elif all(torch.is_tensor(v) for v in values):
            batch[k] = torch.stack(values)
        else:
            batch[k] = values
    return batch


class StreamLoader(DataLoader):
    """The training DataLoader: an epoch that yields no batch at all is a ``DataError`` naming the
    shards (not a silent epoch of zero steps), unless it was resumed at its very end.

    A resumed epoch also gets the workers' round-robin turn back: PyTorch always starts with
    worker 0, so in each round the batches of workers before ``dataset.next_worker`` are held
    back until the later workers' batches of that round have been yielded.
    """

    def __iter__(self):
        dataset = self.dataset
        resumed = bool(getattr(dataset, "resume", None))
        first = getattr(dataset, "next_worker", 0) if self.num_workers > 1 else 0
        n = 0
        held: list = []
        last_worker = -1
        for batch in super().__iter__():
            worker = batch.get("_worker", 0) if isinstance(batch, dict) else 0
            if worker <= last_worker:  # a new round: the held batches of the previous one go first
                yield from held
                n += len(held)
                held = []
            last_worker = worker
            if worker < first:
                held.append(batch)
                continue
            n += 1
            yield batch
        yield from held
        n += len(held)
        if n == 0 and not resumed:
            raise DataError(f"data.train_shards={getattr(dataset, 'pattern', '?')!r} yielded no usable sample in "
                            f"epoch {getattr(dataset, 'epoch', '?')} (empty or unreadable shards; see the warnings "
                            "above); expected webdataset shards of images")


class FixedSimulatedSet(Dataset):
    """A validation set simulated once with per-key seeds: identical across runs and epochs."""

    def __init__(self, urls, processor: SampleProcessor, max_images: int = 64, per_image: int = 4, seed: int = 0):
        self.samples: list[dict] = []
        counter = SkipCounter()
        urls = wds.shardlists.expand_urls(urls) if isinstance(urls, str) else list(urls)
        raw_samples = wds.tariterators.tarfile_samples(({"url": u} for u in urls), handler=counter.handler)
        n_images = 0
        for raw in raw_samples:
            if n_images >= max_images:
                break
            key = raw.get("__key__", "")
            try:
                for j in range(per_image):
                    # first view: central crop; the rest: seeded random crops
                    out = processor(raw, sample_seed(seed, "val", key, j), random_crop=j > 0)
                    out.pop("caption", None)
                    out["key"] = f"{key}#{j}"
                    self.samples.append(out)
            except (CorruptSample, ValueError, OSError) as exc:
                counter.skip(f"{key}: {exc}")
                continue
            n_images += 1
        self.skipped = counter.total
        if not self.samples:
            raise DataError(f"validation shards {urls} yielded no usable sample ({counter.total} skipped); "
                            "expected webdataset shards of images")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return self.samples[i]


class ShardDataModule(L.LightningDataModule):
    """Training and validation data from webdataset shards.

    Args:
        train_shards: shard URL(s), brace notation allowed (``/data/train-{000000..000099}.tar``).
        val_shards: held-out shard URL(s); when unset, the first ``val_images`` training
            images are used (with a warning: that is not a held-out set).
        simulation: the CPU artifact-simulation pipeline (``simulation.SimulationPipeline``).
        resolution: crop size.
        batch_size: *global* batch size; divided by the number of processes.
        resampled, epoch_length, shuffle_buffer: see ``data.stream.ShardStream``.
    """

    def __init__(
        self,
        train_shards: str | Sequence[str] | None,
        simulation: Callable,
        val_shards: str | Sequence[str] | None = None,
        resolution: int = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        epoch_length: int | None = None,
        val_images: int = 64,
        val_per_image: int = 4,
        val_batch_size: int | None = None,
        crop_scale: Sequence[float] = (0.25, 1.0),
        downscale: Sequence[float] | None = None,
        decode_cache: int = 0,
        use_shard_masks: bool = True,
        seed: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__()
        if not train_shards:
            raise DataError(
                "data.train_shards is not set: pass data.train_shards=/path/to/train-{000000..000099}.tar "
                "(webdataset shards made with `python -m data.make_shards SRC OUT`)"
            )
        for name, value, lowest in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                    ("resolution", resolution, 16), ("shuffle_buffer", shuffle_buffer, 0),
                                    ("decode_cache", decode_cache, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise DataError(f"data.{name} must be an integer >= {lowest}; got {value!r}")
        expand_shards(train_shards, "data.train_shards")  # fail now, not after the model is built
        if val_shards:
            expand_shards(val_shards, "data.val_shards")
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.processor = SampleProcessor(resolution, simulation, crop_scale=crop_scale, use_shard_masks=use_shard_masks,
                                         downscale=downscale, decode_cache=decode_cache)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.resampled = resampled
        self.epoch_length = epoch_length
        self.val_images = val_images
        self.val_per_image = val_per_image
        self.seed = seed
        self.pin_memory = pin_memory
        self.batch_size_per_device = batch_size
        self.train_set: ShardStream | None = None
        self.val_set: FixedSimulatedSet | None = None
        # Where training stands in the stream: epoch and, per rank, worker → (position, produced) of
        # the last batch the model consumed. Saved in checkpoints (``state_dict``) for exact resumes.
        self.epoch = 0
        self.places: dict[int, tuple[int, int]] = {}
        self.last_worker = -1
        self.resume: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world != 0:
            raise ValueError(f"data.batch_size={self.batch_size} (global) is not divisible by the {world} processes")
        self.batch_size_per_device = self.batch_size // world
        if self.train_set is None:
            self.train_set = ShardStream(self.train_shards, self.processor, resampled=self.resampled,
                                         shuffle_buffer=self.shuffle_buffer, epoch_length=self.epoch_length,
                                         seed=self.seed)
        if self.val_set is None and stage in (None, "fit", "validate"):
            urls = self.val_shards
            if not urls:
                warnings.warn("data.val_shards is not set: validating on the first training images, which "
                              "are NOT held out", stacklevel=2)
                urls = self.train_shards
            self.val_set = FixedSimulatedSet(urls, self.processor, self.val_images, self.val_per_image, self.seed)
            if self.val_set.skipped:
                log.warning("validation set: %d corrupt samples skipped", self.val_set.skipped)

    def preview_images(self, n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Up to ``n`` decoded training-style crops (image, object mask or None) from the
        validation (or training) shards, for the simulation preview."""
        urls = self.val_shards or self.train_shards
        urls = wds.shardlists.expand_urls(urls) if isinstance(urls, str) else list(urls)
        samples = wds.tariterators.tarfile_samples(({"url": u} for u in urls), handler=SkipCounter().handler)
        out = []
        for i, raw in zip(range(n), samples):
            try:
                _, image, mask, _ = self.processor.prepare(raw, sample_seed(seed, "preview", i))
            except (CorruptSample, ValueError, OSError):
                continue
            out.append((image, mask))
        return out

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.places, self.last_worker = {}, -1
        self.epoch = epoch
        if self.train_set is not None:
            self.train_set.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        if self.resume is not None:  # restored from a checkpoint: continue that epoch where it stopped
            self.epoch, self.places = self.resume["epoch"], dict(self.resume["places"])
            self.last_worker = self.resume["last_worker"]
            next_worker = (self.last_worker + 1) % self.num_workers if self.num_workers > 1 else 0
            self.train_set.resume_from(self.epoch, self.places, next_worker if self.places else 0)
            self.resume = None
        return StreamLoader(self.train_set, batch_size=self.batch_size_per_device, num_workers=self.num_workers,
                            collate_fn=collate, pin_memory=self.pin_memory)

    # ------------------------------------------------------------ resumable stream state
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Note where the batch the model is about to train on came from (the loader runs ahead)."""
        if isinstance(batch, dict) and "_worker" in batch:
            place = tuple(batch.pop(k) for k in STREAM_PLACE)
            if self.trainer is not None and self.trainer.training:
                self.places[int(place[0])] = (int(place[1]), int(place[2]))
                self.last_worker = int(place[0])
        return batch

    def state_dict(self) -> dict:
        """Epoch and per-rank stream places; an epoch whose last batch was consumed resumes at the next one."""
        epoch, places = self.epoch, (dict(self.places), self.last_worker)
        trainer = self.trainer
        if trainer is not None and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            epoch, places = epoch + 1, ({}, -1)
        by_rank = {0: places}
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, places)
            by_rank = dict(enumerate(gathered))
        return {"epoch": epoch, "places": by_rank}

    def load_state_dict(self, state: dict) -> None:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        places, last_worker = state.get("places", {}).get(rank, ({}, -1))
        self.resume = {"epoch": int(state.get("epoch", 0)), "places": places, "last_worker": last_worker}

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.val_batch_size or self.batch_size_per_device,
                          shuffle=False, num_workers=0, collate_fn=collate)
