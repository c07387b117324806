"""Callbacks: a labelled grid of simulated training samples at the start of training."""

from __future__ import annotations

import lightning as L
import torch

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
