"""What diffusers users hold ↔ the refiner's tensors, and back to the kind they gave.

Images: a PIL image, a list of PIL images, a numpy array H×W×C or N×H×W×C (uint8 0–255, or
float in [0, 1]), or a torch tensor C×H×W / N×C×H×W in [0, 1]. Masks follow diffusers'
convention, white (1) = the region that was inpainted: PIL (any mode, read as grayscale), numpy
H×W, H×W×1, H×W×3 or N×H×W(×1), torch H×W, 1×H×W, N×1×H×W; one mask may serve a whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pixperfect.image_io import image_to_tensor


@dataclass(frozen=True)
class Kind:
    """How the caller gave the image, so the result goes back the same way."""

    name: str  # "pil" | "pil_list" | "numpy" | "torch"
    batched: bool = True
    dtype: object = None  # numpy / torch dtype of the input
    device: object = None


def _check_finite(t: torch.Tensor, what: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} holds NaN or Inf values; expected finite values in [0, 1]")


def _numpy_to_tensor(arr: np.ndarray, what: str, channels: int) -> torch.Tensor:
    """H×W×C / N×H×W×C numpy → N×C×H×W float32 in [0, 1] (uint8 / uint16 scaled by their range)."""
    if arr.dtype == np.uint8:
        t = torch.from_numpy(arr.astype(np.float32) / 255.0)
    elif arr.dtype == np.uint16:
        t = torch.from_numpy(arr.astype(np.float32) / 65535.0)
    elif arr.dtype == np.bool_:
        t = torch.from_numpy(arr.astype(np.float32))
    elif np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise TypeError(f"{what} numpy dtype {arr.dtype} is not supported; expected uint8, uint16, bool or float")
    if channels == 1 and t.ndim in (2, 3) and (t.ndim == 2 or t.shape[-1] not in (1, 3, 4)):
        t = t[..., None]  # H×W or N×H×W mask
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ValueError(f"{what} numpy array must be H×W×C or N×H×W×C; got shape {arr.shape}")
    t = t.permute(0, 3, 1, 2)
    if channels == 3 and t.shape[1] == 4:
        t = t[:, :3]
    if channels == 1 and t.shape[1] in (3, 4):
        t = t[:, :3].mean(dim=1, keepdim=True)
    if channels == 3 and t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    return t.contiguous()


def to_tensor(x, what: str = "image", channels: int = 3) -> tuple[torch.Tensor, Kind]:
    """Any accepted kind → (N×C×H×W float in [0, 1] for numpy/PIL; the tensor itself for torch, Kind)."""
    mode = "RGB" if channels == 3 else "L"
    if isinstance(x, Image.Image):
        return image_to_tensor(x, mode)[None], Kind("pil", batched=False)
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{what} is an empty list")
        if all(isinstance(i, Image.Image) for i in x):
            return torch.stack([image_to_tensor(i, mode) for i in x]), Kind("pil_list")
        if all(isinstance(i, np.ndarray) for i in x):
            t, _ = to_tensor(np.stack(x), what, channels)
            return t, Kind("numpy", dtype=x[0].dtype)
        if all(torch.is_tensor(i) for i in x):
            return to_tensor(torch.stack(x), what, channels)
        raise TypeError(f"{what} list must hold only PIL images, only numpy arrays or only tensors")
    if isinstance(x, np.ndarray):
        t = _numpy_to_tensor(x, what, channels)
        _check_finite(t, what)
        return t, Kind("numpy", batched=x.ndim == 4 or (channels == 1 and x.ndim == 3 and x.shape[-1] not in (1, 3, 4)),
                       dtype=x.dtype)
    if torch.is_tensor(x):
        kind = Kind("torch", batched=x.ndim == 4, dtype=x.dtype, device=x.device)
        t = x
        if channels == 1:
            if t.ndim == 2:
                t = t[None, None]
            elif t.ndim == 3:
                t = t[:, None] if t.shape[0] > 1 else t[None]
        elif t.ndim == 3:
            t = t[None]
        if not t.is_floating_point():
            t = t.float() / (255.0 if x.dtype == torch.uint8 else 1.0)
        _check_finite(t, what)
        return t, kind
    raise TypeError(f"{what} must be a PIL image, a list of PIL images, a numpy array or a torch tensor; "
                    f"got {type(x).__name__}")


def from_tensor(t: torch.Tensor, kind: Kind):
    """N×3×H×W in [0, 1] → the kind the caller gave (PIL / list of PIL / numpy / torch)."""
    if kind.name in ("pil", "pil_list"):
        arr = (t.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
        images = [Image.fromarray(a) for a in arr]
        return images[0] if kind.name == "pil" else images
    if kind.name == "numpy":
        arr = t.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        if kind.dtype == np.uint8:
            arr = (arr.clip(0, 1) * 255.0).round().astype(np.uint8)
        elif kind.dtype == np.uint16:
            arr = (arr.clip(0, 1) * 65535.0).round().astype(np.uint16)
        else:
            arr = arr.astype(kind.dtype if np.issubdtype(kind.dtype, np.floating) else np.float32)
        return arr if kind.batched else arr[0]
    out = t if kind.batched else t[0]
    if kind.dtype == torch.uint8:
        return (out.clamp(0, 1) * 255.0).round().to(torch.uint8)
    return out.to(kind.dtype)
