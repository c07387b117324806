"""Pretrained feature backbones through timm, loaded only from local caches (no download here).

Where weights are looked for, in order: an explicit file, the Hugging Face hub cache (timm's
``hf_hub_id``, e.g. ``timm/vgg16.tv_in1k``: what ``timm.create_model(..., pretrained=True)``
downloads on a networked machine), and for torchvision-derived models torchvision's hub cache
file (LPIPS uses the same VGG-16). Missing: one message naming what to put where, or, only when
allowed, a loud warning and no backbone.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from torch import nn

from pixperfect.losses.perceptual import MissingPretrainedWeights

log = logging.getLogger(__name__)

_TORCHVISION_TWINS = {"vgg16.tv_in1k": "vgg"}  # timm model → the LPIPS/torchvision backbone with the same weights


def _full_name(name: str) -> str:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    return f"{cfg.architecture}.{cfg.tag}" if cfg is not None and cfg.tag else name


def cached_weights(name: str, cache_dir: str | None = None) -> Path | None:
    """Local weights of timm model ``name`` (HF hub cache, else torchvision's cache), or None."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            path = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache_dir)
            if isinstance(path, str):
                return Path(path)
    twin = _TORCHVISION_TWINS.get(_full_name(name))
    if twin is not None:
        from pixperfect.losses.perceptual import backbone_cache_path

        path, _ = backbone_cache_path(twin)
        if path.is_file():
            return path
    return None


def create_backbone(name: str, user: str, pretrained: bool | str = True, allow_missing_weights: bool = False,
                    if_missing: str = "It is DROPPED for this run", **timm_kwargs) -> nn.Module | None:
    """``timm.create_model(name, **timm_kwargs)`` with local pretrained weights.

    Args:
        name: timm model name (``vgg16``, ``efficientnet_b0`` …).
        user: what needs it, for the message (e.g. "the VGG feature space").
        pretrained: True = from the caches above; a path = that weight file; False = random init.
        allow_missing_weights: when no weights are cached, warn loudly (``if_missing`` says what the
            caller then does) and return None instead of raising.
    """
    import timm

    if pretrained is False:
        return timm.create_model(name, pretrained=False, **timm_kwargs)
    path = Path(pretrained) if isinstance(pretrained, (str, Path)) else cached_weights(name)
    if path is None or not path.is_file():
        cfg = timm.models.get_pretrained_cfg(name)
        hub_id = cfg.hf_hub_id if cfg is not None else name
        msg = (f"{user} needs pretrained {name} weights, which are not in the local caches and cannot be "
               f"downloaded here. Put them in the Hugging Face cache (`huggingface-cli download {hub_id}` on a "
               f"networked machine, then copy ~/.cache/huggingface/hub or set HF_HUB_CACHE), or pass a weight file.")
        if not allow_missing_weights:
            raise MissingPretrainedWeights(msg + " To run without it, set allow_missing_weights=true explicitly.")
        warnings.warn(f"!!! {msg} {if_missing} (allow_missing_weights=true). !!!", stacklevel=3)
        log.warning("%s dropped: %s", user, msg)
        return None
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **timm_kwargs)
