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
from data.stream import SampleProcessor, ShardStream, SkipCounter, sample_seed

log = logging.getLogger(__name__)


def collate(samples: list[dict]) -> dict:
    """Stack tensors, keep strings as lists, and sum the skip counts."""
    batch: dict = {}
    for k in samples[0]:
        values = [s[k] for s in samples]
        if torch.is_tensor(values[0]):
            batch[k] = torch.stack(values)
        elif k == "n_skipped":
            batch[k] = torch.tensor(sum(values))
        else:
            batch[k] = values
    return batch


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
            raise ValueError(f"validation shards {urls} yielded no usable sample ({counter.total} skipped)")

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
        use_shard_masks: bool = True,
        seed: int = 0,
        pin_memory: bool = False,
    ):
        super().__init__()
        if not train_shards:
            raise ValueError(
                "data.train_shards is not set: pass data.train_shards=/path/to/train-{000000..000099}.tar "
                "(webdataset shards made with `python -m data.make_shards SRC OUT`)"
            )
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.processor = SampleProcessor(resolution, simulation, crop_scale=crop_scale, use_shard_masks=use_shard_masks)
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
        if self.train_set is not None:
            self.train_set.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size_per_device, num_workers=self.num_workers,
                          collate_fn=collate, pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.val_batch_size or self.batch_size_per_device,
                          shuffle=False, num_workers=0, collate_fn=collate)
