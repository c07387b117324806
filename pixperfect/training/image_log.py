"""Image grids (x_gen | x_pred | x_gt | mask) for W&B or, without it, PNG files in the run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid, save_image


def comparison_grid(columns: list[torch.Tensor], max_rows: int = 4) -> torch.Tensor:
    """Rows = samples, columns = the given N×C×H×W tensors (1-channel ones shown as gray)."""
    cols = [c[:max_rows].detach().float().cpu().clamp(0, 1).expand(-1, 3, -1, -1) for c in columns]
    tiles = torch.stack(cols, dim=1).flatten(0, 1)  # (rows·cols)×3×H×W, row-major
    return make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """3×H×W float in [0, 1] → H×W×3 uint8, rounded exactly like ``torchvision.utils.save_image``.

    ``wandb.Image`` casts float arrays with ``astype(uint8)`` without scaling (wandb 0.31), which
    turns a [0, 1] image black, so W&B gets uint8 pixels.
    """
    x = image.detach().float().cpu().clamp(0, 1)
    return x.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def log_grid(trainer, key: str, grid: torch.Tensor, step: int, caption: str = "") -> None:
    """Send to every W&B logger; for other loggers save ``<log_dir>/images/<key>_<step>.png``."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):  # WandbLogger
            logger.log_image(key=key, images=[to_uint8_hwc(grid)], step=step, caption=[caption] if caption else None)
        elif logger.log_dir is not None and trainer.is_global_zero:
            out = Path(logger.log_dir) / "images" / f"{key.replace('/', '_')}_{step:07d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, out)
