"""Small shared helpers: input validation and padding to a network's size multiple."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_image_and_mask(image: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise a ValueError naming the problem when (image, mask) break the project's conventions."""
    if not torch.is_tensor(image) or not torch.is_tensor(mask):
        raise TypeError(f"image and mask must be torch tensors; got {type(image).__name__}, {type(mask).__name__}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be N×3×H×W in [0, 1]; got shape {tuple(image.shape)}")
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be N×1×H×W (1 = edited region); got shape {tuple(mask.shape)}")
    if mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"mask {tuple(mask.shape)} does not match image {tuple(image.shape)}: "
            "expected the same batch size and H×W"
        )
    if not image.is_floating_point():
        raise ValueError(f"image must be a floating-point tensor in [0, 1]; got dtype {image.dtype}")


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad H and W up to a multiple (split evenly on both sides); returns (padded, (l, r, t, b))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pad
    if mode == "constant":
        return F.pad(x, pad, mode="constant", value=0.0), pad
    return F.pad(x, pad, mode=mode), pad


def stable_seed(*parts) -> int:
    """A 63-bit seed from any parts (base seed, epoch, key, …): same parts → same seed in every
    process (unlike ``hash()``, which Python salts per process)."""
    import hashlib

    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
