"""Build a ready PILOT pipeline from names: base model, optional ControlNet / T2I-Adapter /
LoRA / IP-Adapter — one function shared by the CLI and ``evaluation.generate``.

The SD1.x/2.x or SDXL class is picked from the checkpoint's ``model_index.json`` (SDXL has a
``text_encoder_2``). Every name is a local folder/file or a hub id, loaded with diffusers' own
``from_pretrained`` / ``load_lora_weights`` / ``load_ip_adapter``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from pixperfect.pilot.pipeline import PilotPipeline
from pixperfect.pilot.pipeline_xl import PilotXLPipeline

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pipeline_class(model: str | os.PathLike) -> type:
    """PilotXLPipeline for an SDXL checkpoint, PilotPipeline for SD1.x/2.x."""
    config = DiffusionPipeline.load_config(str(model))
    return PilotXLPipeline if config.get("text_encoder_2") not in (None, [None, None]) else PilotPipeline


def resolve_device(device: str = "auto") -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: float16 on CUDA, float32 elsewhere."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


def _loading(what: str, name, fn, *args, **kwargs):
    """Run a diffusers loader; a missing/unreadable source becomes one ValueError naming it."""
    try:
        return fn(*args, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"cannot load {what} from {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None


def load_pilot(model: str | os.PathLike, *, device: str = "auto", dtype: str = "auto",
               controlnet: str | None = None, adapter: str | None = None,
               lora: str | None = None, lora_scale: float = 1.0,
               ip_adapter: str | None = None, ip_adapter_subfolder: str = "", ip_adapter_weight_name: str | None = None,
               ip_adapter_image_encoder_folder: str | None = "image_encoder", ip_adapter_scale: float = 1.0):
    """A PILOT pipeline on ``device`` with whatever extras are named.

    ip_adapter: a weight file (``…/ip-adapter_sd15.safetensors``) or a folder/hub id plus
    ``ip_adapter_weight_name``; the CLIP image encoder comes from the pipeline if it has one,
    else from ``ip_adapter_image_encoder_folder`` beside the weights (diffusers' layout).
    """
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        cls = pipeline_class(model)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a diffusers pipeline at {model}: {str(exc).splitlines()[0]}") from None
    extras = {}
    if controlnet is not None:
        from diffusers import ControlNetModel

        extras["controlnet"] = _loading("a ControlNet", controlnet, ControlNetModel.from_pretrained, controlnet,
                                        dtype=torch_dtype)
    if adapter is not None:
        from diffusers import T2IAdapter

        extras["adapter"] = _loading("a T2I-Adapter", adapter, T2IAdapter.from_pretrained, adapter, dtype=torch_dtype)
    pipe = _loading("a pipeline", model, cls.from_pretrained, model, dtype=torch_dtype, **extras)
    if lora is not None:
        _loading("LoRA weights", lora, pipe.load_lora_weights, lora, adapter_name="lora")
        pipe.set_adapters(["lora"], adapter_weights=[lora_scale])
    if ip_adapter is not None:
        path, weight_name = Path(ip_adapter), ip_adapter_weight_name
        if weight_name is None:
            if not path.is_file():
                raise ValueError(f"ip_adapter {ip_adapter} is not a file; give ip_adapter_weight_name for a folder/hub id")
            path, weight_name = path.parent, path.name
        _loading("an IP-Adapter", ip_adapter, pipe.load_ip_adapter, str(path), subfolder=ip_adapter_subfolder,
                 weight_name=weight_name, image_encoder_folder=ip_adapter_image_encoder_folder)
        pipe.set_ip_adapter_scale(ip_adapter_scale)
    return pipe.to(dev)
