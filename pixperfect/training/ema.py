"""Exponential moving average of the refiner's weights (what gets exported)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_model(model: nn.Module, decay: float = 0.999, warmup: bool = True) -> AveragedModel:
    """``torch.optim.swa_utils.AveragedModel`` with EMA updates.

    With ``warmup`` the decay ramps as ``min(decay, (1 + n) / (10 + n))`` over the first
    updates, so short runs (the CPU demo) are not dominated by the random-init weights.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay must be in [0, 1); got {decay}")

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n)) if warmup else decay
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    ema = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    ema.requires_grad_(False)
    return ema
