"""The PixPerfect refiner: a CM-GAN-style, fully convolutional image-to-image network.

It takes an LDM-edited image and its edit mask and predicts a residual that removes the
low-level artifacts (colour shift, texture mismatch, seams) at and around the edit.
``save_pretrained``/``from_pretrained`` write and read ``config.json`` + ``model.safetensors``
with no Lightning or Hydra involved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from pixperfect.models.pretrained import PretrainedMixin
from pixperfect.models.blocks import (
    Conv2d,
    DownBlock,
    FFCResBlock,
    GlobalModulationBlock,
    SpatialModulationBlock,
    lrelu,
)
from pixperfect.utils import check_image_and_mask, pad_to_multiple


class CMGANRefiner(nn.Module, PretrainedMixin):
    """Encoder (stride-2 stages) → FFC bottleneck → global code → cascaded modulation decoder.

    Args:
        channels: feature width per scale, from full resolution down to the bottleneck; the
            network downsamples ``len(channels) - 1`` times (1/16 for 5 entries, 1/32 for 6).
        num_ffc_blocks: FFC residual blocks at the bottleneck.
        style_dim: width of the global code.
        ffc_global_ratio: share of bottleneck channels in the FFC's spectral branch.

    Forward: ``x_gen`` N×3×H×W in [0, 1], ``mask`` N×1×H×W (1 = edited) → N×3×H×W in [0, 1].
    Any H×W: inputs are padded to a multiple of ``2**(len(channels)-1)`` inside and cropped back.
    The last layer is zero-initialised, so an untrained refiner returns its input exactly.
    """

    @register_to_config
    def __init__(
        self,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        num_ffc_blocks: int = 6,
        style_dim: int = 512,
        ffc_global_ratio: float = 0.75,
    ):
        super().__init__()
        channels = list(channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 entries (one downsampling); got {channels}")
        self.multiple = 2 ** (len(channels) - 1)

        self.stem = Conv2d(4, channels[0], 3)
        self.down = nn.ModuleList(DownBlock(channels[i], channels[i + 1]) for i in range(len(channels) - 1))
        self.bottleneck = nn.Sequential(*(FFCResBlock(channels[-1], ffc_global_ratio) for _ in range(num_ffc_blocks)))
        # Global code: pooled over the whole image and over the background alone, so the code
        # carries the background's colour/texture statistics that the edit must match.
        self.global_mlp = nn.Sequential(
            nn.Linear(2 * channels[-1], style_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(style_dim, style_dim),
        )
        self.global_blocks = nn.ModuleList()
        self.spatial_blocks = nn.ModuleList()
        for i in reversed(range(len(channels) - 1)):
            in_ch, out_ch = channels[i + 1], channels[i]
            self.global_blocks.append(GlobalModulationBlock(in_ch, out_ch, skip_ch=channels[i], style_dim=style_dim))
            self.spatial_blocks.append(SpatialModulationBlock(out_ch, skip_ch=channels[i], style_dim=style_dim))
        self.to_rgb = Conv2d(channels[0], 3, 1)
        nn.init.zeros_(self.to_rgb.weight)  # identity at init
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, x_gen: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_image_and_mask(x_gen, mask)
        h0, w0 = x_gen.shape[-2:]
        image, pad = pad_to_multiple(x_gen, self.multiple, mode="replicate")
        m, _ = pad_to_multiple(mask.to(x_gen.dtype), self.multiple, mode="constant")

        x = lrelu(self.stem(torch.cat([image * 2.0 - 1.0, m], dim=1)))
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(x)
        x = self.bottleneck(x)

        m_low = F.adaptive_avg_pool2d(m, x.shape[-2:])
        bg = (1.0 - m_low).to(x.dtype)
        bg_mean = (x * bg).sum(dim=(2, 3)) / bg.sum(dim=(2, 3)).clamp_min(1.0)
        style = self.global_mlp(torch.cat([x.mean(dim=(2, 3)), bg_mean], dim=1))

        for gblock, sblock, skip in zip(self.global_blocks, self.spatial_blocks, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = gblock(x, skip, style)
            x = sblock(x, skip, style)

        delta = self.to_rgb(x) * 0.5  # network works in [-1, 1]; the residual is in [0, 1] units
        out = (image + delta.to(image.dtype)).clamp(0.0, 1.0)
        return out[..., pad[2] : pad[2] + h0, pad[0] : pad[0] + w0]
