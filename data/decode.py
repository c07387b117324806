"""Turn a raw webdataset sample (bytes per extension) into tensors, or say why it is unusable."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
MASK_KEYS = ("mask.png", "mask.jpg")
CAPTION_KEYS = ("txt", "caption", "caption.txt")


class CorruptSample(ValueError):
    """A sample that cannot be used (missing image, truncated or undecodable bytes)."""


def decode_image(data: bytes, mode: str = "RGB") -> torch.Tensor:
    """Bytes of any PIL-readable image → C×H×W float32 in [0, 1] (RGBA/grayscale/palette → ``mode``)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # truncated files fail here, not later in a worker
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptSample(f"undecodable image bytes ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def decode_sample(sample: dict) -> dict:
    """``{"__key__", "jpg"|"png"|"webp", ["mask.png"], ["txt"]}`` → ``{"key", "image", "mask"?, "caption"?}``."""
    key = sample.get("__key__", "<unknown>")
    image_key = next((k for k in IMAGE_KEYS if k in sample), None)
    if image_key is None:
        raise CorruptSample(f"sample {key!r} has no image (expected one of {IMAGE_KEYS}; has {sorted(sample)})")
    out = {"key": key, "image": decode_image(sample[image_key], "RGB")}
    mask_key = next((k for k in MASK_KEYS if k in sample), None)
    if mask_key is not None:
        mask = decode_image(sample[mask_key], "L")
        if mask.shape[-2:] != out["image"].shape[-2:]:
            raise CorruptSample(f"sample {key!r}: mask {tuple(mask.shape[-2:])} does not match image "
                                f"{tuple(out['image'].shape[-2:])}")
        out["mask"] = (mask > 0.5).float()
    caption_key = next((k for k in CAPTION_KEYS if k in sample), None)
    if caption_key is not None:
        raw = sample[caption_key]
        out["caption"] = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return out
