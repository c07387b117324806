"""VGG feature space (ablation, Table 4): a high-dimensional 'discriminative space' made of the
activations of a pretrained VGG-16 (timm ``features_only``). Only L1 makes sense there (LPIPS and the discriminator
take images), so its experiment sets the other weights to 0."""

from __future__ import annotations

import torch
from torch import nn


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatureMap:
    def __init__(self, features: nn.Module):
        self.features = features

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        mean = image.new_tensor(IMAGENET_MEAN)[None, :, None, None]
        std = image.new_tensor(IMAGENET_STD)[None, :, None, None]
        outs = self.features((image - mean) / std)  # timm features_only: one map per requested layer
        return torch.cat([x.flatten(1) / x[0].numel() ** 0.5 for x in outs], dim=1)

    def to_valid_range(self, image: torch.Tensor) -> torch.Tensor:
        raise TypeError("the VGG feature space holds features, not images: set lpips_weight=0 and adv_weight=0")


class VGGFeatureSpace(nn.Module):
    """Frozen VGG-16 activations after the given ``features`` ReLU indices (default relu1_2 …
    relu4_3), from timm's ``features_only`` VGG-16 (torchvision's ImageNet weights, ``vgg16.tv_in1k``).

    Args:
        layers: indices into VGG-16's ``features`` Sequential; each must be one timm exposes
            (3, 8, 15, 22, 29: the ReLU before each max-pool).
        allow_missing_weights: no cached weights → drop the space with a loud warning instead of failing.
        model: an already built timm ``features_only`` module (tests pass a randomly initialised one).
        pretrained: True = cached weights (HF hub cache or torchvision's), a path = that file, False = random.
    """

    def __init__(self, layers=(3, 8, 15, 22), allow_missing_weights: bool = False, model: nn.Module | None = None,
                 pretrained: bool | str = True):
        super().__init__()
        self.layers = sorted(layers)
        self.features = model if model is not None else vgg16_features(self.layers, pretrained, allow_missing_weights)
        if self.features is not None:
            self.features.eval().requires_grad_(False)

    @property
    def available(self) -> bool:
        return self.features is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.features is not None:
            self.features.eval()
        return self

    def fit(self, x_pred, x_gt, mask, generator=None) -> VGGFeatureMap:
        return VGGFeatureMap(self.features)


VGG16_FEATURE_LAYERS = (3, 8, 15, 22, 29)  # timm's feature_info for vgg16: features.3 … features.29


def vgg16_features(layers, pretrained: bool | str = True, allow_missing_weights: bool = False) -> nn.Module | None:
    """timm ``vgg16`` with ``features_only=True`` returning the activations after ``layers``."""
    from pixperfect.models.timm_backbone import create_backbone

    unknown = sorted(set(layers) - set(VGG16_FEATURE_LAYERS))
    if unknown:
        raise ValueError(f"VGG feature layers must be among {list(VGG16_FEATURE_LAYERS)}; got {unknown}")
    out_indices = tuple(VGG16_FEATURE_LAYERS.index(i) for i in sorted(layers))
    return create_backbone("vgg16.tv_in1k", "the VGG feature space", pretrained, allow_missing_weights,
                           features_only=True, out_indices=out_indices)
