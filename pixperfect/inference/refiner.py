"""``Refiner``: load an exported refiner and run it on images — the three-line API.

    from pixperfect import Refiner
    refiner = Refiner.from_pretrained("outputs/demo/refiner")
    refined = refiner(image, mask)          # N×3×H×W in [0, 1], N×1×H×W (1 = edited)

A pipeline in the diffusers sense: it holds a model and owns no weights of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import pixperfect.models as models
from pixperfect.inference.pooling import pooled_refine
from pixperfect.utils import check_image_and_mask


def _as_batch(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if torch.is_tensor(image) and image.ndim == 3:
        image = image[None]
    if torch.is_tensor(mask) and mask.ndim == 2:
        mask = mask[None, None]
    elif torch.is_tensor(mask) and mask.ndim == 3:  # 1×H×W for one image, or N×H×W
        mask = mask[:, None] if mask.shape[0] == image.shape[0] and mask.shape[0] > 1 else mask[None]
    return image, mask


class Refiner:
    """Refines LDM-edited images: removes colour shift, texture mismatch and seams around the mask."""

    def __init__(self, model: nn.Module):
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        torch_dtype: torch.dtype | None = None, **kwargs) -> "Refiner":
        """Load ``config.json`` + ``model.safetensors`` from a local folder (or a Hub repo id)."""
        config_file = Path(path) / "config.json"
        class_name = "CMGANRefiner"  # a hub id: diffusers resolves it (or fails offline)
        if Path(path).exists():
            if not config_file.is_file():
                raise FileNotFoundError(f"{path} is not an exported refiner folder (no config.json); "
                                        "export one with `python -m pixperfect.export CKPT OUT_DIR`")
            class_name = json.loads(config_file.read_text()).get("_class_name", class_name)
        model_cls = getattr(models, class_name, None)
        if model_cls is None:
            raise ValueError(f"{config_file} names an unknown refiner class {class_name!r}")
        model = model_cls.from_pretrained(path, **kwargs)
        if torch_dtype is not None:
            model = model.to(torch_dtype)
        if device is not None:
            model = model.to(device)
        return cls(model)

    def to(self, *args, **kwargs) -> "Refiner":
        self.model.to(*args, **kwargs)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, mask: torch.Tensor, pool: int = 1,
                 generator: torch.Generator | None = None, metric: str = "l1", band_px: int = 8,
                 return_index: bool = False):
        """Refine ``image`` N×3×H×W (or 3×H×W) in [0, 1] with ``mask`` N×1×H×W (or H×W), 1 = edited.

        ``pool`` > 1 turns on inference-time pooling: ``pool`` colour-jittered variants of the
        edit (variant 0 = the input) are refined in one batched forward and the output with the
        smallest input–output ``metric`` ("l1" | "l2" | "mean_color") over the mask and a
        ``band_px`` band around it is returned. ``return_index`` also returns the chosen variants.
        """
        image, mask = _as_batch(image, mask)
        check_image_and_mask(image, mask)
        if image.min() < 0 or image.max() > 1:
            raise ValueError(f"image values must lie in [0, 1]; got [{float(image.min()):.3f}, "
                             f"{float(image.max()):.3f}] (divide 8-bit images by 255)")
        dtype = next(self.model.parameters()).dtype
        x = image.to(self.device, dtype)
        m = mask.to(self.device, dtype).clamp(0, 1)
        if pool == 1 and not return_index:
            return self.model(x, m).to(image.dtype)
        out, index, _ = pooled_refine(self.model, x, m, pool, generator, metric, band_px)
        out = out.to(image.dtype)
        return (out, index) if return_index else out
