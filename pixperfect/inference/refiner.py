"""``Refiner``: load an exported refiner and run it on images — the three-line API.

    from pixperfect import Refiner
    refiner = Refiner.from_pretrained("outputs/demo/refiner")
    refined = refiner(image, mask)   # PIL / list of PIL / numpy HWC / torch NCHW; mask white = edited

A pipeline in the diffusers sense: it holds a model and owns no weights of its own. It returns
the kind of image it was given, so it drops in after any diffusers inpainting pipeline.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import nn

import pixperfect.models as models
from pixperfect.inference.convert import from_tensor, to_tensor
from pixperfect.inference.memory import retain_freed_memory
from pixperfect.inference.pooling import pooled_refine
from pixperfect.inference.region import REGIONS, composite_edit
from pixperfect.utils import check_image_and_mask

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                   "float16": torch.float16}


class Refiner:
    """Refines LDM-edited images: removes colour shift, texture mismatch and seams around the mask.

    Speed options (off by default but ``retain_memory``; each gives the plain output within a
    tolerance, tested): ``channels_last`` (NHWC convolutions, usually faster on tensor cores),
    ``autocast`` ("bf16" | "fp16": mixed precision of the forward; the FFT branch stays fp32),
    ``compile`` (``torch.compile`` of the network; ``True`` for the default inductor backend or a
    backend name) and ``retain_memory`` (glibc keeps freed CPU memory for reuse instead of
    page-faulting every activation in again: bit-identical output, 1.2–1.3× faster at 512² on a
    CPU, but process-wide and the process keeps its peak memory; ``None``: on when the model is on
    the CPU; ``pixperfect/inference/memory.py``).
    """

    def __init__(self, model: nn.Module, channels_last: bool = False, autocast: str | None = None,
                 compile: bool | str = False, retain_memory: bool | None = None):
        self.model = model.eval().requires_grad_(False)
        self.retain_memory = retain_memory
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)} or None; got {autocast!r}")
        self.autocast = autocast
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.compile = compile
        self._forward = self.model
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self._forward = torch.compile(self.model, backend=backend, dynamic=False)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        torch_dtype: torch.dtype | None = None, channels_last: bool = False,
                        autocast: str | None = None, compile: bool | str = False,
                        retain_memory: bool | None = None, **kwargs) -> "Refiner":
        """Load ``config.json`` + ``model.safetensors`` from a local folder (or a Hub repo id)."""
        config_file = Path(path) / "config.json"
        class_name = "CMGANRefiner"  # a hub id: the config is read after download
        if Path(path).is_dir() and config_file.is_file():
            try:
                class_name = json.loads(config_file.read_text()).get("_class_name", class_name)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{config_file} is not valid JSON ({exc}); re-export the refiner") from None
        model_cls = getattr(models, class_name, None)
        if model_cls is None:
            raise ValueError(f"{config_file} names an unknown refiner class {class_name!r}")
        model = model_cls.from_pretrained(path, **kwargs)
        if torch_dtype is not None:
            model = model.to(torch_dtype)
        if device is not None:
            model = model.to(device)
        return cls(model, channels_last=channels_last, autocast=autocast, compile=compile,
                   retain_memory=retain_memory)

    def to(self, *args, **kwargs) -> "Refiner":
        self.model.to(*args, **kwargs)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The network on N×3×H×W / N×1×H×W tensors already on the device, with the speed options."""
        if self.retain_memory or (self.retain_memory is None and image.device.type == "cpu"):
            retain_freed_memory()
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
            mask = mask.contiguous(memory_format=torch.channels_last)
        ctx = (torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.autocast]) if self.autocast
               else contextlib.nullcontext())
        with ctx:
            out = self._forward(image, mask)
        return out.to(image.dtype).contiguous()

    @torch.no_grad()
    def __call__(self, image, mask, pool: int = 1, generator: torch.Generator | list | None = None,
                 metric: str = "l1", band_px: int = 8, region: str = "edit", region_band_px: int | None = None,
                 return_index: bool = False, original=None):
        """Refine ``image`` with ``mask`` (white / 1 = edited); returns the kind ``image`` was.

        ``image``: PIL image, list of PIL images, numpy H×W×C / N×H×W×C (uint8, or float in [0, 1]),
        or torch 3×H×W / N×3×H×W in [0, 1]. ``mask``: the same kinds (any channels, read as gray;
        diffusers' convention), one mask per image or one for all.

        ``region``: "edit" (default) keeps the input, bit for bit, outside the mask dilated and
        feathered by ``region_band_px`` each (default max(4, min(H, W) // 32)) — for edits pasted
        back into the original; "full" returns the refiner's output everywhere — for raw LDM
        outputs whose whole background was re-decoded.

        ``original``: the unedited image, which an editing user has (any kind ``image`` may be, at
        its size; ``image``'s kind sets the return kind). Its background is pasted back around the
        edit before refining and kept everywhere outside the mask (binarised at 0.5; bit for bit
        at ``image``'s dtype); its pixels under the mask do not affect the output: a cast that a feathered paste or a
        re-decoded background spread beyond the mask becomes a step on the mask's edge, which the
        seam prior reads. Only with ``region="edit"``.

        ``pool`` > 1 turns on inference-time pooling: ``pool`` colour-jittered variants of the
        edit (variant 0 = the input) are refined in one batched forward and the output with the
        smallest input–output ``metric`` ("l1" | "l2" | "mean_color") over the mask and a
        ``band_px`` band around it is kept; ``generator`` seeds the variants (one generator, or
        one per image). ``return_index`` also returns the chosen variants.
        """
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}; got {region!r}")
        x, kind = to_tensor(image, "image", 3)
        m, _ = to_tensor(mask, "mask", 1)
        if m.shape[0] == 1 and x.shape[0] > 1:
            m = m.expand(x.shape[0], -1, -1, -1)
        check_image_and_mask(x, m)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("image holds NaN or Inf values; expected finite values in [0, 1]")
        if not bool(torch.isfinite(m).all()):
            raise ValueError("mask holds NaN or Inf values; expected finite values in [0, 1] (1 = edited)")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"image values must lie in [0, 1]; got [{float(x.min()):.3f}, "
                             f"{float(x.max()):.3f}] (divide 8-bit images by 255)")
        if original is not None:
            if region != "edit":
                raise ValueError(f"original= keeps the original outside the mask, so it goes with region='edit'; "
                                 f"got region={region!r}")
            o, _ = to_tensor(original, "original", 3)
            if o.shape != x.shape:
                raise ValueError(f"original is {tuple(o.shape)} but image is {tuple(x.shape)} (N×3×H×W); "
                                 "expected the unedited image(s) at the edit's size")
            o = o.to(x.device, x.dtype)
            m = m.to(x.device)
            if not bool(torch.isfinite(o).all()) or o.min() < 0 or o.max() > 1:
                raise ValueError("original must hold finite values in [0, 1] (divide 8-bit images by 255)")
            x = torch.where(m > 0.5, x, o)  # the edit pasted into the original
        dtype = next(self.model.parameters()).dtype
        x_dev = x.to(self.device, dtype)
        m_dev = m.to(self.device, dtype).clamp(0, 1)
        if pool == 1:
            out = self.forward(x_dev, m_dev)
            index = torch.zeros(x.shape[0], dtype=torch.long, device=self.device)
        else:
            out, index, _ = pooled_refine(self.forward, x_dev, m_dev, pool, generator, metric, band_px)
        reference = x.to(self.device)
        out = out.to(reference.dtype)
        if region == "edit":
            out = composite_edit(out, reference, m.to(self.device), region_band_px, region_band_px)
        if original is not None:  # reference is the edit pasted into the original: keep it outside the mask
            out = torch.where(m.to(self.device) > 0.5, out, reference)
        if kind.name == "torch":
            out = out.to(kind.device)
        result = from_tensor(out, kind)
        return (result, index) if return_index else result
