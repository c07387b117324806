"""Autoencoders for the VAE round-trip artifact: any diffusers ``AutoencoderKL`` (SD1.5, SDXL,
FLUX VAEs; local folder or hub id) or a TAESD-format tiny autoencoder (``*_encoder.pth`` +
``*_decoder.pth``, e.g. TAEF2). All expose ``roundtrip(image01) -> image01`` at any H×W."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pixperfect.models.tiny_autoencoder import TinyAutoencoder
from pixperfect.utils import pad_to_multiple


class DiffusersVAE(nn.Module):
    """``AutoencoderKL`` round trip: [0, 1] → [-1, 1] → latents (mode, or a seeded sample) → [0, 1]."""

    downsample = 8

    def __init__(self, vae: nn.Module, sample_latents: bool = False):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.sample_latents = sample_latents

    def roundtrip(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        dist = self.vae.encode(image * 2.0 - 1.0).latent_dist
        z = dist.sample(generator) if self.sample_latents else dist.mode()
        return ((self.vae.decode(z).sample + 1.0) / 2.0).clamp(0.0, 1.0)


def load_autoencoder(source: str, subfolder: str | None = None, sample_latents: bool = False) -> nn.Module:
    """A TAESD folder, a diffusers ``AutoencoderKL`` folder (or its parent pipeline folder with a
    ``vae/`` subfolder), or a hub id."""
    path = Path(source)
    if path.is_dir() and any(path.glob("*encoder.pth")):
        return TinyAutoencoder.from_dir(path)
    from diffusers import AutoencoderKL

    if path.is_dir() and subfolder is None and not (path / "config.json").is_file() and (path / "vae").is_dir():
        subfolder = "vae"
    if not path.exists() and "/" not in str(source):
        raise FileNotFoundError(f"autoencoder {source!r} is neither a folder nor a hub id (owner/name)")
    return DiffusersVAE(AutoencoderKL.from_pretrained(source, subfolder=subfolder), sample_latents)


def roundtrip_any_size(autoencoder: nn.Module, image: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad to the autoencoder's multiple (replicate), round trip, crop back."""
    h, w = image.shape[-2:]
    x, pad = pad_to_multiple(image, autoencoder.downsample, mode="replicate")
    y = autoencoder.roundtrip(x, generator)
    return y[..., pad[2]: pad[2] + h, pad[0]: pad[0] + w]
