"""Reading and writing image files as the project's tensors, with the bit depth read from the file.

PIL's ``convert("RGB")`` on a 16-bit image (modes ``I;16``, ``I;16B``, ``I``) clips values to
255 instead of scaling them, so a 16-bit PNG comes out almost all white. Here the scale comes
from the image's mode: 8-bit modes divide by 255, 16-bit ones by 65535, float ones are taken as
they are. NaN/Inf in an image or mask is refused with a ``ValueError``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# mode → full-scale value of one sample; "F" (32-bit float) is taken as already in [0, 1]
_SCALE = {"1": 1.0, "L": 255.0, "P": 255.0, "RGB": 255.0, "RGBA": 255.0, "LA": 255.0, "CMYK": 255.0,
          "YCbCr": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0,
          "I": 65535.0, "F": 1.0}


def _to_array(im: Image.Image, mode: str) -> np.ndarray:
    """H×W×C float32 in [0, 1] for ``mode`` "RGB" (3 channels) or "L" (1 channel)."""
    if im.mode in ("RGBA", "LA", "P", "PA") and mode == "RGB":
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)  # transparent pixels → white, as viewers show them
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float32) / _SCALE[im.mode]
        if im.mode == "I":  # 32-bit integer PNGs are 16-bit data in PIL's widened mode
            arr = np.clip(arr, 0.0, 1.0)
        arr = arr[:, :, None]
        return np.repeat(arr, 3, axis=2) if mode == "RGB" else arr
    if mode == "L" and im.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
        arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        return arr[:, :, None]
    arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    return arr[:, :, None] if arr.ndim == 2 else arr


def open_image(source: str | os.PathLike | bytes) -> Image.Image:
    """A fully loaded PIL image from a path or encoded bytes (truncated files fail here)."""
    im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    im.load()
    return im


def image_to_tensor(im: Image.Image, mode: str = "RGB") -> torch.Tensor:
    """PIL image → C×H×W float32 in [0, 1] (3 channels for "RGB", 1 for "L"), any bit depth."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L'; got {mode!r}")
    arr = _to_array(im, mode)
    if not np.isfinite(arr).all():
        raise ValueError("image holds NaN or Inf values; expected finite values in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def read_image(source: str | os.PathLike | bytes, mode: str = "RGB") -> torch.Tensor:
    """A file path or encoded bytes → C×H×W float32 in [0, 1]. Raises OSError/ValueError when unreadable."""
    with open_image(source) as im:
        return image_to_tensor(im, mode)


def read_mask(source: str | os.PathLike | bytes, threshold: float = 0.5) -> torch.Tensor:
    """A mask file (white = edited) → 1×H×W float32 in {0, 1}, binarised at ``threshold`` of full scale."""
    return (read_image(source, "L") > threshold).float()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """C×H×W (or 1×C×H×W) float in [0, 1] → H×W×C uint8 (H×W for one channel), rounded."""
    if image.ndim == 4:
        image = image[0]
    arr = (image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def encode_png(image: torch.Tensor) -> bytes:
    """C×H×W float in [0, 1] → PNG bytes (8-bit, deterministic)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return buf.getvalue()


def write_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write an 8-bit PNG/JPEG atomically (to a temporary name, then renamed): a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(to_uint8(image)).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
