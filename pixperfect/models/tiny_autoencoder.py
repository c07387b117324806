"""TAESD-family tiny autoencoders (Ollin Boer Bohan's TAESD / TAESDXL / TAEF1 / TAEF2), loaded
from their ``.pth`` encoder/decoder state dicts.

Why by hand: diffusers' ``AutoencoderTiny`` reads the TAESD layout but not TAEF2's GroupNorm
"pool" branches in the 1/8-scale blocks, and the ``.pth`` files are plain ``nn.Sequential``
state dicts whose key layout this module reproduces exactly (``0.weight``, ``1.conv.0.weight``,
``11.pool.1.weight`` …). Images are in [0, 1] on both ends.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to about ±3 before decoding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """conv3×3-ReLU-conv3×3-ReLU-conv3×3 + skip, ReLU after the sum; optionally a GroupNorm
    'pool' branch (1×1 widen 4× → GroupNorm(4) → ReLU → 1×1) added to the input first."""

    def __init__(self, n_in: int, n_out: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = (nn.Sequential(nn.Conv2d(n_in, 4 * n_in, 1, bias=False), nn.GroupNorm(4, 4 * n_in), nn.ReLU(),
                                   nn.Conv2d(4 * n_in, n_in, 1, bias=False)) if pool else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def tiny_encoder(latent_channels: int, pool_blocks: bool) -> nn.Sequential:
    return nn.Sequential(
        _conv(3, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, stride=2, bias=False), *(Block(64, 64, pool=pool_blocks) for _ in range(3)),
        _conv(64, latent_channels),
    )


def tiny_decoder(latent_channels: int, pool_blocks: bool) -> nn.Sequential:
    return nn.Sequential(
        Clamp(), _conv(latent_channels, 64), nn.ReLU(),
        *(Block(64, 64, pool=pool_blocks) for _ in range(3)), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), _conv(64, 64, bias=False),
        Block(64, 64), _conv(64, 3),
    )


class TinyAutoencoder(nn.Module):
    """8× down/up-sampling tiny autoencoder. ``roundtrip(image)`` = decode(encode(image)), in [0, 1]."""

    downsample = 8

    def __init__(self, latent_channels: int = 4, pool_blocks: bool = False):
        super().__init__()
        self.encoder = tiny_encoder(latent_channels, pool_blocks)
        self.decoder = tiny_decoder(latent_channels, pool_blocks)

    @classmethod
    def from_pth(cls, encoder_path: str | Path, decoder_path: str | Path) -> "TinyAutoencoder":
        """Load TAESD-format ``*_encoder.pth`` / ``*_decoder.pth``; latent width and the presence of
        pool branches are read off the weights."""
        enc = torch.load(encoder_path, map_location="cpu", weights_only=True)
        dec = torch.load(decoder_path, map_location="cpu", weights_only=True)
        last = max(int(k.split(".")[0]) for k in enc)
        model = cls(latent_channels=enc[f"{last}.weight"].shape[0], pool_blocks=any(".pool." in k for k in enc))
        model.encoder.load_state_dict(enc, strict=True)
        model.decoder.load_state_dict(dec, strict=True)
        return model.eval().requires_grad_(False)

    @classmethod
    def from_dir(cls, folder: str | Path) -> "TinyAutoencoder":
        """A folder with exactly one ``*_encoder.pth`` and one ``*_decoder.pth``."""
        folder = Path(folder)
        enc, dec = sorted(folder.glob("*encoder.pth")), sorted(folder.glob("*decoder.pth"))
        if len(enc) != 1 or len(dec) != 1:
            raise FileNotFoundError(f"{folder} must hold one *_encoder.pth and one *_decoder.pth (TAESD format)")
        return cls.from_pth(enc[0], dec[0])

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents).clamp(0.0, 1.0)

    def roundtrip(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.encode(image))
