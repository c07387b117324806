"""Projected-GAN-style discriminator (Sauer et al. 2021): a frozen pretrained timm backbone,
fixed random 1×1 projections of its multi-scale features, and small trainable per-scale heads.

Why: a pretrained feature space gives the discriminator ImageNet statistics from step 0, so it
needs far less data and fewer steps to see texture mismatch. Mask conditioning as in
``MaskConditionedDiscriminator``: the mask, resized to each scale, is concatenated to the
projected features, so each head judges the edit relative to its surroundings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pixperfect.models.blocks import Conv2d, DownBlock, lrelu
from pixperfect.utils import check_image_and_mask


class ProjectedDiscriminator(nn.Module):
    """Args:
        backbone: timm model name with ``features_only`` support (Projected GAN uses EfficientNet-lite0).
        out_indices: which backbone feature levels get a head.
        channels: ``[projection width, head widths…]``; each extra width adds a stride-2 residual stage.
        pretrained: True = backbone weights from the local timm / Hugging Face cache, a path = that
            file, False = random (tests).
        allow_missing_weights: no cached weights → a loud warning and a randomly initialised
            (still frozen) backbone instead of an error.

    Output: N×1×1×L, the patch logits of all heads concatenated (the GAN losses take means).
    """

    def __init__(self, backbone: str = "tf_efficientnet_lite0", out_indices: Sequence[int] = (1, 2, 3, 4),
                 channels: Sequence[int] = (64, 128), pretrained: bool | str = True,
                 allow_missing_weights: bool = False):
        super().__init__()
        from pixperfect.models.timm_backbone import create_backbone

        kwargs = dict(features_only=True, out_indices=tuple(out_indices))
        features = create_backbone(backbone, "the projected discriminator", pretrained, allow_missing_weights,
                                   "Its backbone is RANDOMLY INITIALISED for this run", **kwargs)
        if features is None:  # allowed to run without pretrained weights
            features = create_backbone(backbone, "the projected discriminator", False, **kwargs)
        self.backbone = features.eval().requires_grad_(False)
        cfg = getattr(features, "pretrained_cfg", None) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)))[None, :, None, None],
                             persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)))[None, :, None, None],
                             persistent=False)
        channels = list(channels)
        # fixed random cross-channel mixing (Projected GAN's CCM): frozen parameters, never trained
        self.projections = nn.ModuleList()
        for c in features.feature_info.channels():
            proj = nn.Conv2d(c, channels[0], 1, bias=False)
            nn.init.kaiming_normal_(proj.weight)
            self.projections.append(proj.requires_grad_(False))
        stages = list(zip(channels, channels[1:]))
        self.heads = nn.ModuleList(
            nn.Sequential(Conv2d(channels[0] + 1, channels[0], 3), *(DownBlock(a, b) for a, b in stages),
                          Conv2d(channels[-1], 1, 1))
            for _ in self.projections)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen BatchNorm statistics
        return self

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_image_and_mask(image, mask)
        feats = self.backbone((image - self.mean) / self.std)
        logits = []
        for f, proj, head in zip(feats, self.projections, self.heads):
            m = F.interpolate(mask.to(f.dtype), size=f.shape[-2:], mode="area")
            x = torch.cat([proj(f), m * 2.0 - 1.0], dim=1)
            x = lrelu(head[0](x))
            for layer in list(head)[1:-1]:
                x = layer(x)
            logits.append(head[-1](lrelu(x)).flatten(1))
        return torch.cat(logits, dim=1)[:, None, None, :]
