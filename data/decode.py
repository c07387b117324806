"""Turn a raw webdataset sample (bytes per extension) into tensors, or say why it is unusable."""

from __future__ import annotations

import json

import torch
from PIL import UnidentifiedImageError

from pixperfect.image_io import read_image

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
MASK_KEYS = ("mask.png", "mask.jpg")
CAPTION_KEYS = ("txt", "caption", "caption.txt")
JSON_KEYS = ("json",)
OPTIONAL_KEYS = ("caption", "meta")  # per-sample sidecars passed on to the batch when present


class CorruptSample(ValueError):
    """A sample that cannot be used (missing image, truncated or undecodable bytes)."""


def decode_image(data: bytes, mode: str = "RGB") -> torch.Tensor:
    """Bytes of any PIL-readable image → C×H×W float32 in [0, 1] (RGBA/grayscale/palette → ``mode``).

    The scale comes from the image's mode (``pixperfect.image_io``): a 16-bit PNG is divided by
    65535, not clipped at 255.
    """
    try:
        return read_image(bytes(data), mode)  # truncated files fail here, not later in a worker
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptSample(f"undecodable image bytes ({type(exc).__name__}: {exc})") from exc


def decode_sample(sample: dict) -> dict:
    """``{"__key__", "jpg"|"png"|"webp", ["mask.png"], ["txt"], ["json"]}`` →
    ``{"key", "image", "mask"?, "caption"?, "meta"?}``. Sidecars are optional per sample."""
    key = sample.get("__key__", "<unknown>")
    image_key = next((k for k in IMAGE_KEYS if k in sample), None)
    if image_key is None:
        raise CorruptSample(f"sample {key!r} has no image (expected one of {IMAGE_KEYS}; has {sorted(sample)})")
    out = {"key": key, "image": decode_image(sample[image_key], "RGB")}
    mask_key = next((k for k in MASK_KEYS if k in sample), None)
    if mask_key is not None:
        mask = decode_image(sample[mask_key], "L")  # read_mask's threshold: half of full scale
        if mask.shape[-2:] != out["image"].shape[-2:]:
            raise CorruptSample(f"sample {key!r}: mask {tuple(mask.shape[-2:])} does not match image "
                                f"{tuple(out['image'].shape[-2:])}")
        out["mask"] = (mask > 0.5).float()
    caption_key = next((k for k in CAPTION_KEYS if k in sample), None)
    if caption_key is not None:
        raw = sample[caption_key]
        out["caption"] = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    json_key = next((k for k in JSON_KEYS if k in sample), None)
    if json_key is not None:
        raw = sample[json_key]
        try:
            out["meta"] = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptSample(f"sample {key!r}: unreadable json sidecar ({exc})") from exc
    return out
