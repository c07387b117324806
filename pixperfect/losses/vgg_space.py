"""VGG feature space (ablation, Table 4): a high-dimensional 'discriminative space' made of the
activations of a pretrained VGG-16. Only L1 makes sense there (LPIPS and the discriminator
take images), so its experiment sets the other weights to 0."""

from __future__ import annotations

import torch
from torch import nn

from pixperfect.losses.perceptual import backbone_available

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatureMap:
    def __init__(self, features: nn.Module, layers: list[int]):
        self.features = features
        self.layers = layers

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        mean = image.new_tensor(IMAGENET_MEAN)[None, :, None, None]
        std = image.new_tensor(IMAGENET_STD)[None, :, None, None]
        x = (image - mean) / std
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.layers:
                outs.append(x.flatten(1) / x[0].numel() ** 0.5)
            if i >= self.layers[-1]:
                break
        return torch.cat(outs, dim=1)

    def to_valid_range(self, image: torch.Tensor) -> torch.Tensor:
        raise TypeError("the VGG feature space holds features, not images: set lpips_weight=0 and adv_weight=0")


class VGGFeatureSpace(nn.Module):
    """Frozen VGG-16 ``features`` up to the given ReLU indices (default relu1_2 … relu4_3)."""

    def __init__(self, layers=(3, 8, 15, 22), allow_missing_weights: bool = False, model: nn.Module | None = None):
        super().__init__()
        self.layers = sorted(layers)
        self.features = model if model is not None else self._load(allow_missing_weights)
        if self.features is not None:
            self.features.eval().requires_grad_(False)

    @staticmethod
    def _load(allow_missing_weights: bool) -> nn.Module | None:
        import torchvision

        if not backbone_available("vgg", "the VGG feature space", allow_missing_weights):
            return None
        return torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1).features

    @property
    def available(self) -> bool:
        return self.features is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.features is not None:
            self.features.eval()
        return self

    def fit(self, x_pred, x_gt, mask, generator=None) -> VGGFeatureMap:
        return VGGFeatureMap(self.features, self.layers)
