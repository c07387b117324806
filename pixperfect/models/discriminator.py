"""Mask-conditioned discriminator: StyleGAN2-style residual stages ending in patch logits.

It sees ``concat(image, mask)`` so it can judge the edit *relative to* its surroundings,
which is where seams and colour mismatch live. Patch logits keep it fully convolutional.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import register_to_config
from torch import nn

from pixperfect.models.pretrained import PretrainedMixin
from pixperfect.models.blocks import Conv2d, DownBlock, lrelu
from pixperfect.utils import check_image_and_mask


class MaskConditionedDiscriminator(nn.Module, PretrainedMixin):
    """Residual downsampling stages over ``channels`` → a 1-channel map of patch logits.

    Input image in [0, 1] (mapped to [-1, 1] inside), mask N×1×H×W. Output N×1×H/2^k×W/2^k
    with k = ``len(channels) - 1``.
    """

    @register_to_config
    def __init__(self, channels: Sequence[int] = (64, 128, 256, 512, 512)):
        super().__init__()
        channels = list(channels)
        self.stem = Conv2d(4, channels[0], 3)
        self.stages = nn.Sequential(*(DownBlock(channels[i], channels[i + 1]) for i in range(len(channels) - 1)))
        self.head = Conv2d(channels[-1], channels[-1], 3)
        self.out = Conv2d(channels[-1], 1, 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_image_and_mask(image, mask)
        x = lrelu(self.stem(torch.cat([image * 2.0 - 1.0, mask.to(image.dtype)], dim=1)))
        x = self.stages(x)
        return self.out(lrelu(self.head(x)))
