"""Test-only helpers: callbacks, importable by training subprocesses as ``tests.helpers``, and the tiny
refiner the inference tests share."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class ParamChecksum(L.Callback):
    """Writes each rank's refiner/discriminator parameter sums at the start and end of fit."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)

    def _write(self, trainer, pl_module, tag: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            g = sum(float(p.double().sum()) for p in pl_module.refiner.parameters())
            d = sum(float(p.double().sum()) for p in pl_module.discriminators.parameters())
        (self.out_dir / f"{tag}_rank{trainer.global_rank}.txt").write_text(f"{g!r} {d!r} {int(pl_module.step_count)}")

    def on_fit_start(self, trainer, pl_module):
        self._write(trainer, pl_module, "start")

    def on_train_end(self, trainer, pl_module):
        self._write(trainer, pl_module, "end")


TINY_REFINER = dict(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, ffc_global_ratio=0.5)


def tiny_refiner(seed: int = 0):
    """A tiny ``CMGANRefiner`` (in train mode, as built) whose output layer is not zero, so that,
    unlike a fresh one, it changes every pixel. The same seed gives the same weights."""
    from pixperfect.models import CMGANRefiner

    torch.manual_seed(seed)
    model = CMGANRefiner(**TINY_REFINER)
    torch.nn.init.normal_(model.to_rgb.weight, std=0.05)
    return model
