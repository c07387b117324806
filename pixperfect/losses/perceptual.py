"""LPIPS perceptual loss with an explicit policy for missing pretrained weights.

LPIPS needs an ImageNet backbone (torchvision AlexNet/VGG/SqueezeNet) from the torch hub
cache; the calibrated linear heads ship inside the ``lpips`` wheel. This machine may have no
network, so we check the cache *before* torchvision tries to download, and either fail with a
message saying what to put where, or — only when the config says so — drop the term loudly.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

_BACKBONES = {
    "alex": "AlexNet_Weights",
    "vgg": "VGG16_Weights",
    "squeeze": "SqueezeNet1_1_Weights",
}


class MissingPretrainedWeights(RuntimeError):
    """A pretrained backbone is not in the local cache and cannot be downloaded here."""


def backbone_cache_path(net: str) -> tuple[Path, str]:
    """Where torchvision looks for the ImageNet weights of an LPIPS backbone, and their URL."""
    import torchvision.models as tvm

    if net not in _BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(_BACKBONES)}; got {net!r}")
    url = getattr(tvm, _BACKBONES[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def backbone_available(net: str, user: str, allow_missing_weights: bool) -> bool:
    """True when the ImageNet backbone ``net`` is cached. Otherwise raise a message saying what to
    download where — or, only when ``allow_missing_weights``, warn loudly that ``user`` (a loss
    term) is dropped and return False."""
    path, url = backbone_cache_path(net)
    if path.is_file():
        return True
    msg = (f"{user} needs the pretrained ImageNet backbone at {path}, which is missing and cannot be "
           f"downloaded here. Download {url} into {path.parent} (or set TORCH_HOME to a cache that has it).")
    if not allow_missing_weights:
        raise MissingPretrainedWeights(msg + " To train without this term, set its allow_missing_weights=true "
                                             "explicitly.")
    warnings.warn(f"!!! {msg} The term is DROPPED for this run (allow_missing_weights=true). !!!", stacklevel=3)
    log.warning("%s dropped: %s", user, msg)
    return False


def load_lpips(net: str = "vgg", allow_missing_weights: bool = False) -> nn.Module | None:
    """The frozen ``lpips.LPIPS`` module, or None when weights are absent and that is allowed."""
    if not backbone_available(net, f"LPIPS ({net})", allow_missing_weights):
        return None
    import lpips

    model = lpips.LPIPS(net=net, pretrained=True, verbose=False)
    model.eval().requires_grad_(False)
    return model


class LPIPSLoss(nn.Module):
    """LPIPS distance between images in [0, 1]; ``(loss, logs)``.

    Args:
        net: backbone, ``alex`` | ``vgg`` | ``squeeze``.
        allow_missing_weights: when the backbone is not cached, drop the term with a loud
            warning instead of failing. Only configs meant to run offline (demo, tests) set it.
        model: an already built LPIPS-like module (tests inject a randomly initialised one).
    """

    def __init__(self, net: str = "vgg", allow_missing_weights: bool = False, model: nn.Module | None = None):
        super().__init__()
        self.net = net
        self.model = model if model is not None else load_lpips(net, allow_missing_weights)
        if self.model is not None:
            self.model.eval().requires_grad_(False)

    @property
    def available(self) -> bool:
        return self.model is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.model is not None:
            self.model.eval()  # frozen backbone: dropout stays off
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor):
        if self.model is None:
            zero = pred.new_zeros(())
            return zero, {}
        loss = self.model(pred * 2.0 - 1.0, target * 2.0 - 1.0).mean()
        return loss, {"lpips": loss.detach()}
