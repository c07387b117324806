"""Continuing a run in its own folder: after a requeue (Slurm), a SIGTERM or a crash.

A run folder (``paths.output_dir``; a Slurm job keeps its folder across requeues) may hold
``checkpoints/last.ckpt`` (written by ``LatestCheckpoint``) and ``hpc_ckpt_N.ckpt`` (written by
Lightning's SLURM plugin on the pre-emption signal). The newest of them is where the run goes on;
older ``hpc_ckpt``s are deleted, and the loggers continue where they were (same CSV version, same
W&B run id) instead of starting new ones.
"""

from __future__ import annotations

import csv
import logging
import re
import uuid
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

HPC_PATTERN = re.compile(r"^hpc_ckpt_(\d+)\.ckpt$")
WANDB_ID_FILE = "wandb_run_id.txt"


def hpc_checkpoints(output_dir: str | Path) -> list[Path]:
    """``hpc_ckpt_N.ckpt`` files of a run folder, oldest (lowest N) first."""
    folder = Path(output_dir)
    found = [(int(m.group(1)), p) for p in folder.glob("hpc_ckpt_*.ckpt") if (m := HPC_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def newest_checkpoint(output_dir: str | Path) -> Path | None:
    """The most recently written of ``checkpoints/last.ckpt`` and the ``hpc_ckpt``s, or None."""
    candidates = [p for p in [Path(output_dir) / "checkpoints" / "last.ckpt", *hpc_checkpoints(output_dir)]
                  if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def prune_hpc_checkpoints(output_dir: str | Path, keep: int = 1) -> list[Path]:
    """Delete all but the ``keep`` newest ``hpc_ckpt``s (each is a full training state); returns the deleted."""
    old = hpc_checkpoints(output_dir)[:-keep] if keep > 0 else hpc_checkpoints(output_dir)
    for p in old:
        p.unlink(missing_ok=True)
    return old


def continue_loggers(loggers, output_dir: str | Path) -> None:
    """Point the loggers of a run folder at what its earlier attempts wrote: the CSV logger keeps its
    newest version (appending, with the old header kept) and the W&B logger reuses the run id stored
    in the folder (written on the first attempt), so a requeued job is one run, not several."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    for logger in loggers:
        if isinstance(logger, CSVLogger) and logger._version is None:
            root = Path(logger.root_dir)
            versions = sorted(int(p.name.split("_")[1]) for p in root.glob("version_*")
                              if p.is_dir() and p.name.split("_")[1].isdigit())
            if versions:
                logger._version = versions[-1]
                metrics = Path(logger.log_dir) / "metrics.csv"
                if metrics.is_file():
                    rows = metrics.read_bytes()
                    with warnings.catch_warnings():  # "Previous log files … will be deleted": not here
                        warnings.simplefilter("ignore")
                        writer = logger.experiment  # Lightning's writer deletes an existing metrics.csv …
                    metrics.write_bytes(rows)  # … so put the earlier attempts' rows back, and their header
                    with open(metrics, newline="") as f:
                        writer.metrics_keys = sorted(next(csv.reader(f), []))
        elif isinstance(logger, WandbLogger) and logger._experiment is None:
            id_file = Path(output_dir) / WANDB_ID_FILE
            if logger._wandb_init.get("id") is None:
                if id_file.is_file():
                    logger._wandb_init["id"] = id_file.read_text().strip()
                else:
                    from lightning.pytorch.utilities import rank_zero_only

                    logger._wandb_init["id"] = uuid.uuid4().hex[:8]  # W&B's own ids look the same
                    if getattr(rank_zero_only, "rank", 0) == 0:  # only rank 0 starts the W&B run
                        id_file.parent.mkdir(parents=True, exist_ok=True)
                        id_file.write_text(logger._wandb_init["id"])
                logger._id = logger._wandb_init["id"]
            logger._wandb_init["resume"] = "allow"
