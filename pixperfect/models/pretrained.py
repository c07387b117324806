"""``save_pretrained`` / ``from_pretrained`` for our networks: ``config.json`` + ``model.safetensors``.

Built on diffusers' ``ConfigMixin`` (config serialisation, ``register_to_config``) but with the
plain ``model.safetensors`` file name instead of diffusers' ``diffusion_pytorch_model.*``, so an
exported refiner is a two-file folder any tool can read.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffusers.configuration_utils import ConfigMixin
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_NAME = "model.safetensors"


class PretrainedMixin(ConfigMixin):
    """Mix into an ``nn.Module`` whose ``__init__`` is decorated with ``@register_to_config``."""

    config_name = "config.json"

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.save_config(out)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, out / WEIGHTS_NAME, metadata={"format": "pt", "class": type(self).__name__})
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, subfolder: str | None = None, **hub_kwargs) -> nn.Module:
        """From a local folder, or a Hugging Face Hub repo id (downloaded into the HF cache)."""
        local = Path(path) / (subfolder or "")
        if local.is_dir():
            weights = local / WEIGHTS_NAME
            if not (local / cls.config_name).is_file() or not weights.is_file():
                raise FileNotFoundError(f"{local} must hold {cls.config_name} and {WEIGHTS_NAME}")
        else:
            from huggingface_hub import hf_hub_download

            weights = Path(hf_hub_download(str(path), WEIGHTS_NAME, subfolder=subfolder, **hub_kwargs))
            local = weights.parent
        config = cls.load_config(local)
        model = cls.from_config(config)
        model.load_state_dict(load_file(weights, device="cpu"), strict=True)
        return model.eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

