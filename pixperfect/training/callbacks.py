"""Callbacks: a labelled grid of simulated training samples at the start of training; ``last.ckpt``
kept as the newest training state."""

from __future__ import annotations

import os
import warnings
from weakref import proxy

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from pixperfect.training.image_log import log_grid


class SimulationPreview(L.Callback):
    """Logs ``simulation/preview`` (x_gt | x_gen | mask | amplified diff, families named per row)
    once at fit start, so every run records what its artifacts looked like."""

    def __init__(self, n: int = 8, seed: int = 0):
        self.n = n
        self.seed = seed

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = getattr(trainer, "datamodule", None)
        if not trainer.is_global_zero or dm is None or not hasattr(dm, "preview_images"):
            return
        from simulation.preview import render_grid, simulate_rows

        items = dm.preview_images(self.n, self.seed)
        if not items:
            return
        with torch.no_grad():
            rows = simulate_rows([img for img, _ in items], dm.processor.simulation, pl_module.device_simulation,
                                 self.n, self.seed, masks=[m for _, m in items])
        grid = torch.from_numpy(render_grid(rows)).permute(2, 0, 1).float() / 255.0
        log_grid(trainer, "simulation/preview", grid, 0, "x_gt | x_gen | mask | |diff|×4")


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt`` = the newest training state, whatever a monitored metric says: written every
    ``every_n_train_steps`` optimizer steps (two per batch with a discriminator), at every train
    epoch end, and when the run is stopped (SIGTERM: Lightning raises ``SIGTERMException`` after the
    current batch and ``save_on_exception`` writes the state before the process exits). Written
    atomically: to ``last.ckpt.part`` beside it, then renamed (Lightning's own temporary file lives in
    /tmp and is *copied* when the run folder is on another file system), so a kill mid-save leaves
    the previous ``last.ckpt`` intact.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 100, filename: str = "last"):
        super().__init__(dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, save_last=False,
                         every_n_train_steps=every_n_train_steps, save_on_train_epoch_end=True,
                         save_on_exception=True, enable_version_counter=False, auto_insert_metric_name=False)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        part = f"{filepath}.part"
        trainer.save_checkpoint(part, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(part, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args, **kwargs) -> None:
        with warnings.catch_warnings():  # the state after the optimizer step is what we want to save
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # step-triggered saves skip epoch ends
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
