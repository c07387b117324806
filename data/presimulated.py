"""Simulate once, train many: training samples written to disk by the simulation, read back by runs.

    python -m data.presimulated OUT --n 48000 [train overrides ...]   # e.g. experiment=learn_gpu "data.train_shards=..."
    python train.py experiment=learn_gpu data=presimulated data.path=OUT ...

Why: an ablation (Table 4) compares objectives, not data. With the live pipeline each row simulates
its own samples on the CPU, which on one GPU host is the bottleneck (~750 samples/s from 14 cores for
*all* runs together), and rows differ in the samples they saw. Written once, every row trains on the
very same samples, as fast as the GPU allows; the file's pages are shared by every run on the host.

The folder holds one ``.npy`` per key (``x_gt``, ``x_gen`` float16 N×3×H×W, ``mask``, ``alpha`` float16
N×1×H×W, ``vae`` and ``cast`` bool N), optionally ``val/`` (the run's fixed validation set, same layout) and
``meta.json`` (count, resolution, the train overrides and the resolved simulation config). float16
keeps ~0.1 of an 8-bit step, so a cast of a few steps is stored as simulated.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.errors import DataError

log = logging.getLogger(__name__)

IMAGE_KEYS = ("x_gt", "x_gen")
MAP_KEYS = ("mask", "alpha")
FLAG_KEYS = ("vae", "cast")  # per sample: a VAE round trip is due on the device; a colour cast was simulated
KEYS = (*IMAGE_KEYS, *MAP_KEYS, *FLAG_KEYS)


class SampleWriter:
    """Appends collated batches to preallocated ``.npy`` memmaps in ``folder``; ``n`` samples in all.
    Memmaps, so a set larger than memory is written (and later read) a batch at a time."""

    def __init__(self, folder: str | Path, n: int, resolution: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n, self.filled = n, 0
        shapes = {**{k: (n, 3, resolution, resolution) for k in IMAGE_KEYS},
                  **{k: (n, 1, resolution, resolution) for k in MAP_KEYS}, **{k: (n,) for k in FLAG_KEYS}}
        self.arrays = {k: np.lib.format.open_memmap(self.folder / f"{k}.npy", mode="w+",
                                                    dtype=np.bool_ if k in FLAG_KEYS else np.float16, shape=s)
                       for k, s in shapes.items()}

    def add(self, batch: dict) -> int:
        """Write as much of ``batch`` as still fits; returns the number of samples written."""
        take = min(self.n - self.filled, int(batch["x_gen"].shape[0]))
        for k, array in self.arrays.items():
            value = batch.get(k)
            if value is None and k == "alpha":
                value = batch["mask"]  # hard paste-back: the blend map is the mask
            if value is None and k in FLAG_KEYS:
                value = torch.zeros(take, dtype=torch.bool)
            array[self.filled:self.filled + take] = torch.as_tensor(value[:take]).numpy().astype(array.dtype)
        self.filled += take
        return take

    def close(self) -> None:
        for array in self.arrays.values():
            array.flush()


def write(folder: str | Path, datamodule, n: int, meta: dict | None = None) -> dict:
    """Draw ``n`` training samples (and the validation set, if it has one) from ``datamodule``."""
    folder = Path(folder)
    datamodule.setup("fit")
    resolution = int(datamodule.processor.resolution)
    writer = SampleWriter(folder, n, resolution)
    skipped = 0
    epoch = 0
    while writer.filled < n:
        datamodule.set_epoch(epoch)
        before = writer.filled
        for batch in datamodule.train_dataloader():
            skipped += int(batch.get("n_skipped", 0))
            writer.add(batch)
            if writer.filled >= n:
                break
        if writer.filled == before:
            raise DataError(f"the training data yielded no sample in epoch {epoch}; nothing to write to {folder}")
        epoch += 1
    writer.close()
    n_val = 0
    val_set = getattr(datamodule, "val_set", None)
    if val_set is not None and len(val_set):
        from data.datamodule import collate

        val = SampleWriter(folder / "val", len(val_set), resolution)
        val.add(collate([val_set[i] for i in range(len(val_set))]))
        val.close()
        n_val = len(val_set)
    info = {"n": n, "n_val": n_val, "resolution": resolution, "skipped": skipped, **(meta or {})}
    (folder / "meta.json").write_text(json.dumps(info, indent=2))
    return info


def load_arrays(folder: str | Path, meta_folder: str | Path | None = None) -> dict[str, np.ndarray]:
    """The memmapped arrays of a presimulated folder (its ``meta.json`` is in ``meta_folder``, default the
    folder itself), checked for completeness and agreement. A folder written before the ``cast`` label
    existed reads as "no cast" everywhere."""
    folder = Path(folder)
    missing = [k for k in KEYS if not (folder / f"{k}.npy").is_file() and k != "cast"]
    if not missing and not Path(meta_folder or folder).joinpath("meta.json").is_file():
        raise DataError(f"{folder} has no meta.json: its write did not finish (the arrays are preallocated, "
                        "so an interrupted write leaves zeros); write it again into a new folder")
    if missing:
        raise DataError(f"{folder} is not a presimulated set (missing {', '.join(f'{k}.npy' for k in missing)}); "
                        "write one with python -m data.presimulated OUT --n N [train overrides]")
    arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in KEYS if (folder / f"{k}.npy").is_file()}
    arrays.setdefault("cast", np.zeros(arrays["vae"].shape[0], dtype=np.bool_))
    sizes = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{folder}: the arrays hold different sample counts {sizes}; rewrite the set")
    return arrays


class PresimulatedSet(Dataset):
    """Samples of a presimulated folder as float32 tensors, read a batch at a time (``__getitems__``)."""

    def __init__(self, folder: str | Path, meta_folder: str | Path | None = None):
        self.folder = Path(folder)
        self.arrays = load_arrays(folder, meta_folder)

    def __len__(self) -> int:
        return int(self.arrays["vae"].shape[0])

    def __getitems__(self, indices: list[int]) -> dict:
        order = np.argsort(indices)  # ascending reads from the memmap, then back to the sampler's order
        idx = np.asarray(indices)[order]
        inverse = torch.from_numpy(np.argsort(order))
        batch = {}
        for k, array in self.arrays.items():
            value = torch.from_numpy(np.ascontiguousarray(array[idx]))[inverse]
            batch[k] = value if k in FLAG_KEYS else value.float()
        return batch

    def __getitem__(self, i: int) -> dict:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, repeated or cut to ``length`` samples (the whole set when None).
    ``skip``: samples of the epoch already consumed before a resume; iterations of that epoch start after
    them (the next epoch starts from its beginning)."""

    def __init__(self, size: int, length: int | None = None, seed: int = 0):
        self.size, self.length, self.seed, self.epoch, self.skip = size, length or size, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length - self.skip

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        rounds = -(-self.length // self.size)
        order = torch.cat([torch.randperm(self.size, generator=g) for _ in range(rounds)])[:self.length]
        return iter(order[self.skip:].tolist())  # the skip holds for this epoch (however often it is iterated)


def identity(batch):
    """The collate function: ``PresimulatedSet.__getitems__`` already returns a whole batch."""
    return batch


class PresimulatedDataModule(L.LightningDataModule):
    """Training (and validation) batches from a folder written by ``python -m data.presimulated``.

    Args:
        path: the folder. Its ``val/`` subfolder, when present, is the validation set.
        batch_size: samples per batch (one process: the module refuses DDP).
        epoch_length: samples per epoch (null: the whole set once).
        resolution: when set (an experiment sets it for live data), it must be the folder's.
        simulation, stream settings (``shuffle_buffer``, ``downscale``, …): ignored, so any experiment
            runs on a presimulated folder with ``data=presimulated``; they shaped the samples when the
            folder was written (``meta.json`` keeps them).
    """

    def __init__(self, path: str, batch_size: int = 64, num_workers: int = 1, epoch_length: int | None = None,
                 val_batch_size: int | None = None, seed: int = 0, pin_memory: bool = False,
                 resolution: int | None = None, simulation=None, **stream_settings):
        super().__init__()
        if not path:
            raise DataError("data.path is not set: pass data.path=FOLDER written by python -m data.presimulated")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"data.batch_size must be an integer >= 1; got {batch_size!r}")
        if epoch_length is not None and (isinstance(epoch_length, bool) or not isinstance(epoch_length, int)
                                         or epoch_length < 1):
            raise DataError(f"data.epoch_length must be an integer >= 1 or null (the whole folder); got {epoch_length!r}")
        self.path = Path(path)
        self.train_set = PresimulatedSet(self.path)  # fail now, not after the model is built
        self.val_set = PresimulatedSet(self.path / "val", self.path) if (self.path / "val").is_dir() else None
        meta = self.path / "meta.json"
        self.meta = json.loads(meta.read_text()) if meta.is_file() else {}
        side = int(self.train_set.arrays["x_gen"].shape[-1])
        if resolution is not None and int(resolution) != side:
            raise DataError(f"data.resolution={resolution} but {self.path} holds {side}² samples: set "
                            f"data.resolution={side} (or null), or write the folder at {resolution}²")
        if stream_settings:
            log.info("data=presimulated ignores %s: they shaped the samples when %s was written",
                     ", ".join(sorted(stream_settings)), self.path)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.sampler = EpochSampler(len(self.train_set), epoch_length, seed)
        self.consumed: tuple[int, int] = (0, 0)  # (epoch, batches of it the model consumed)
        self.resume: tuple[int, int] | None = None
        if len(self.sampler) < batch_size:  # drop_last would leave an epoch of no batch: an untrained export
            raise DataError(f"an epoch of {len(self.sampler)} samples from {self.path} holds no whole batch of "
                            f"data.batch_size={batch_size}; write more samples or lower the batch size")

    def setup(self, stage: str | None = None) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        if world > 1:
            raise DataError("data=presimulated is a single-process data module (one GPU per run); "
                            "use data=shards for DDP")
        if self.val_set is None and stage in (None, "fit", "validate"):
            warnings.warn(f"{self.path} has no val/ folder: training runs without validation", stacklevel=2)
        print(f"presimulated training set {self.path}: {len(self.train_set)} samples"
              + (f", simulated with {self.meta.get('overrides')}" if self.meta.get("overrides") else ""))

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    # ------------------------------------------------------------ exact resume
    # Where training stands: the epoch and the batches of it the model consumed (the loader runs ahead,
    # so they are counted as they reach the model). Saved in checkpoints; a resumed run skips them.
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is None or trainer.training:
            epoch = trainer.current_epoch if trainer is not None else self.sampler.epoch
            self.consumed = (epoch, self.consumed[1] + 1 if self.consumed[0] == epoch else 1)
        return batch

    def state_dict(self) -> dict:
        epoch, batches = self.consumed
        trainer = self.trainer
        if trainer is not None and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            epoch, batches = epoch + 1, 0
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict) -> None:
        self.resume = (int(state.get("epoch", 0)), int(state.get("batches", 0)))

    def train_dataloader(self) -> DataLoader:
        if self.resume is not None:  # restored from a checkpoint: continue that epoch after its consumed batches
            epoch, batches = self.resume
            self.sampler.set_epoch(epoch)
            self.sampler.skip = min(batches * self.batch_size, self.sampler.length)
            self.consumed, self.resume = (epoch, batches), None
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=self.sampler,
                          num_workers=self.num_workers, collate_fn=identity, pin_memory=self.pin_memory,
                          drop_last=True, persistent_workers=False)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.val_batch_size or self.batch_size,
                          shuffle=False, num_workers=0, collate_fn=identity)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.presimulated", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write (one .npy per key, val/, meta.json)")
    parser.add_argument("--n", type=int, required=True, help="training samples to write")
    parser.add_argument("--workers", type=int, default=None, help="simulation workers (default: data.num_workers)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides that choose the data and simulation")
    args = parser.parse_intermixed_args(argv)
    if args.n < 1:
        print(f"error: --n must be >= 1; got {args.n}", file=sys.stderr)
        return 2
    if Path(args.out).exists() and (not Path(args.out).is_dir() or any(Path(args.out).iterdir())):
        print(f"error: {args.out} exists (a file, or a folder that is not empty); choose a new folder (nothing already written is "
              "overwritten)", file=sys.stderr)
        return 2

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[1]
    os.environ.setdefault("PIXPERFECT_ROOT", str(root))
    extra = [f"data.num_workers={args.workers}"] if args.workers is not None else []
    with initialize_config_dir(config_dir=str(root / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*args.overrides, *extra])
    if cfg.data.get("_target_", "").endswith("PresimulatedDataModule"):
        print("error: the overrides choose data=presimulated; name the data that is to be simulated", file=sys.stderr)
        return 2
    try:
        torch.manual_seed(int(cfg.seed))
        datamodule = instantiate(cfg.data, simulation=instantiate(cfg.simulation))
        meta = {"overrides": list(args.overrides),
                "simulation": OmegaConf.to_container(cfg.simulation, resolve=True)}
        info = write(args.out, datamodule, args.n, meta)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info['n']} training samples ({info['n_val']} validation) at {info['resolution']}² to {args.out}"
          + (f"; {info['skipped']} corrupt samples skipped" if info["skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
