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
        tmp = out / f".{WEIGHTS_NAME}.tmp"  # written whole, then renamed: a crash leaves no half file
        try:
            save_file(state, tmp, metadata={"format": "pt", "class": type(self).__name__})
            os.replace(tmp, out / WEIGHTS_NAME)
        finally:
            tmp.unlink(missing_ok=True)
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, subfolder: str | None = None, **hub_kwargs) -> nn.Module:
        """From a local folder, or a Hugging Face Hub repo id (downloaded into the HF cache).

        Every failure is one ``FileNotFoundError`` / ``ValueError`` naming the file and what is expected.
        """
        local = Path(path) / (subfolder or "")
        if local.is_dir():
            weights = local / WEIGHTS_NAME
            if not (local / cls.config_name).is_file() or not weights.is_file():
                raise FileNotFoundError(f"{local} must hold {cls.config_name} and {WEIGHTS_NAME} "
                                        "(export one with `python -m pixperfect.export CKPT OUT_DIR`)")
        else:
            local = cls._download(path, subfolder, hub_kwargs)
            weights = local / WEIGHTS_NAME
        try:
            config = cls.upgrade_config(cls.load_config(local))
            model = cls.from_config(config)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{local / cls.config_name} is not a valid {cls.__name__} config: "
                             f"{str(exc).splitlines()[0]}") from None
        try:
            state = load_file(weights, device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError on truncated/corrupt files
            raise ValueError(f"{weights} is not a readable safetensors file ({str(exc).splitlines()[0]}); "
                             "it may be truncated — export the refiner again") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{weights} does not match {local / cls.config_name}: "
                             f"{str(exc).splitlines()[0]}") from None
        return model.eval()

    @classmethod
    def _download(cls, path, subfolder: str | None, hub_kwargs: dict) -> Path:
        """A Hub repo id → the downloaded folder; a path that cannot be a repo id → "no such folder"."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        name = str(path)
        try:
            validate_repo_id(name)
        except HFValidationError:
            raise FileNotFoundError(f"no such folder: {name} (expected an exported refiner folder with "
                                    f"{cls.config_name} + {WEIGHTS_NAME}, or a Hub repo id 'owner/name')") from None
        try:
            weights = Path(hf_hub_download(name, WEIGHTS_NAME, subfolder=subfolder, **hub_kwargs))
            hf_hub_download(name, cls.config_name, subfolder=subfolder, **hub_kwargs)
        except Exception as exc:  # offline, unknown repo, missing file: huggingface_hub has many error types
            raise FileNotFoundError(f"{name} is neither a local folder nor a downloadable Hub repo "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        return weights.parent

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """Hook: fill in options a config saved by an older version lacks (identity here)."""
        return config

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

