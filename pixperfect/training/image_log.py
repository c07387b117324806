"""Image grids (x_gen | x_pred | x_gt | mask) for W&B or, without it, PNG files in the run folder."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image


def comparison_grid(columns: list[torch.Tensor], max_rows: int = 4) -> torch.Tensor:
    """Rows = samples, columns = the given N×C×H×W tensors (1-channel ones shown as gray)."""
    cols = [c[:max_rows].detach().float().cpu().clamp(0, 1).expand(-1, 3, -1, -1) for c in columns]
    tiles = torch.stack(cols, dim=1).flatten(0, 1)  # (rows·cols)×3×H×W, row-major
    return make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0)


def log_grid(trainer, key: str, grid: torch.Tensor, step: int, caption: str = "") -> None:
    """Send to every W&B logger; for other loggers save ``<log_dir>/images/<key>_<step>.png``."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):  # WandbLogger
            logger.log_image(key=key, images=[grid], step=step, caption=[caption] if caption else None)
        elif logger.log_dir is not None and trainer.is_global_zero:
            out = Path(logger.log_dir) / "images" / f"{key.replace('/', '_')}_{step:07d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, out)
