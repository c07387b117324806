"""Artifacts written for evaluation, independently of ``simulation/`` (which this module never imports).

A refiner trained on ``simulation/`` and scored on artifacts from the same code would be scored on
memory. These use other libraries and other models: Lab-space casts (scikit-image), resampling
blur and JPEG (Pillow), a real autoencoder round trip (TAESD-format or diffusers ``AutoencoderKL``),
a content band re-inpainted by the biharmonic inpainter (scikit-image; training uses OpenCV's
Telea/NS), polygon masks (training draws strokes, ellipses and boxes). Each function maps the
clean photo (H×W×3 float64 in [0, 1]) to what an LDM would have produced *inside the mask*; the
composite through a hard or feathered alpha is done by the caller.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
import torch
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from skimage.restoration import inpaint_biharmonic


def polygon_mask(h: int, w: int, rng: np.random.Generator, coverage: tuple[float, float] = (0.08, 0.35)) -> np.ndarray:
    """A random star-shaped polygon (object-like) with coverage in range; H×W bool."""
    for _ in range(50):
        n = int(rng.integers(5, 13))
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        base = rng.uniform(0.15, 0.4) * min(h, w)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = base * rng.uniform(0.6, 1.4, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).round().astype(np.int32)
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [pts], 1)
        if coverage[0] <= m.mean() <= coverage[1]:
            return m.astype(bool)
    return m.astype(bool)


def _lab_offset(image: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Add a Lab offset (3-vector or H×W×3 field) and return sRGB in [0, 1]."""
    return np.clip(lab2rgb(rgb2lab(image) + offset), 0, 1)


def _random_lab_offset(rng: np.random.Generator) -> np.ndarray:
    """ΔL in ±[2, 8], Δa/Δb in ±[2, 7]: casts of the size seen in LDM edits (ΔE00 ~ 2–8)."""
    mag = np.array([rng.uniform(2, 8), rng.uniform(2, 7), rng.uniform(2, 7)])
    return mag * rng.choice([-1.0, 1.0], 3)


def color_uniform(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _lab_offset(image, _random_lab_offset(rng))


def color_gradient(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cast that fades across the edit along a random direction (from 0–30% to 100% strength)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    theta = rng.uniform(0, 2 * np.pi)
    proj = np.cos(theta) * np.arange(w)[None, :] + np.sin(theta) * np.arange(h)[:, None]
    lo, hi = (proj[ys, xs].min(), proj[ys, xs].max()) if len(ys) else (proj.min(), proj.max())
    ramp = np.clip((proj - lo) / max(hi - lo, 1e-6), 0, 1)
    start = rng.uniform(0.0, 0.3)
    strength = start + (1 - start) * ramp
    return _lab_offset(image, strength[:, :, None] * _random_lab_offset(rng) * 1.3)


def texture_blur(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resolution loss: down- and up-sampling by 2–4× (Pillow bicubic)."""
    h, w = mask.shape
    f = rng.uniform(2.0, 4.0)
    im = Image.fromarray((image * 255).round().astype(np.uint8))
    small = im.resize((max(1, round(w / f)), max(1, round(h / f))), Image.BICUBIC)
    return np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.float64) / 255.0


def texture_noise(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signal-dependent (Poisson-Gaussian-like) noise, σ up to ~0.03."""
    sigma = rng.uniform(0.01, 0.03) * np.sqrt(np.clip(image, 0.05, 1))
    return np.clip(image + sigma * rng.standard_normal(image.shape), 0, 1)


def texture_jpeg(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG at quality 10–35 (Pillow, 4:2:0)."""
    buf = io.BytesIO()
    Image.fromarray((image * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=int(rng.integers(10, 36)))
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64) / 255.0


def content_band(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A band just inside the mask boundary re-inpainted from its surroundings (biharmonic), so
    structures crossing the boundary are broken there."""
    h, w = mask.shape
    width = max(2, int(round(rng.uniform(0.01, 0.03) * min(h, w))))
    m = mask.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    band = (m - cv2.erode(m, kernel)).astype(bool)
    if not band.any():
        return image
    small = max(1, min(h, w) // 256)  # biharmonic solve cost grows fast: work at ≤ ~256 px, upsample the fill
    if small > 1:
        img_s = cv2.resize(image, (w // small, h // small), interpolation=cv2.INTER_AREA)
        band_s = cv2.resize(band.astype(np.uint8), (w // small, h // small), interpolation=cv2.INTER_NEAREST) > 0
        fill = cv2.resize(inpaint_biharmonic(img_s, band_s, channel_axis=-1), (w, h), interpolation=cv2.INTER_CUBIC)
    else:
        fill = inpaint_biharmonic(image, band, channel_axis=-1)
    out = image.copy()
    out[band] = np.clip(fill[band], 0, 1)
    return out


class AutoencoderRoundTrip:
    """Encode the *whole* image with a real autoencoder, decode, hand back the decoded image.

    ``source``: a TAESD-format folder (``*encoder.pth`` + ``*decoder.pth``, e.g. TAEF2) or a
    diffusers ``AutoencoderKL`` folder / hub id. Loaded here, not through ``simulation/``.
    """

    def __init__(self, source: str, device: str = "cpu"):
        from pathlib import Path

        from pixperfect.models.tiny_autoencoder import TinyAutoencoder

        path = Path(source)
        if path.is_dir() and any(path.glob("*encoder.pth")):
            self.model, self.kind = TinyAutoencoder.from_dir(path), "taesd"
        else:
            from diffusers import AutoencoderKL

            sub = "vae" if path.is_dir() and (path / "vae").is_dir() and not (path / "config.json").is_file() else None
            self.model, self.kind = AutoencoderKL.from_pretrained(source, subfolder=sub), "kl"
        self.model = self.model.eval().requires_grad_(False).to(device).float()
        self.device = device
        self.multiple = 8 if self.kind == "kl" else getattr(self.model, "downsample", 8)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().to(self.device)
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        if self.kind == "kl":
            z = self.model.encode(x * 2 - 1).latent_dist.mode()
            y = (self.model.decode(z).sample + 1) / 2
        else:
            y = self.model.roundtrip(x)
        return y[0, :, :h, :w].clamp(0, 1).permute(1, 2, 0).double().cpu().numpy()


def composite(edit: np.ndarray, clean: np.ndarray, mask: np.ndarray, feather_sigma: float) -> np.ndarray:
    """``alpha·edit + (1 − alpha)·clean`` with alpha the mask, hard (σ = 0) or Gaussian-feathered."""
    alpha = mask.astype(np.float64)
    if feather_sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather_sigma, borderType=cv2.BORDER_REFLECT)
    return alpha[:, :, None] * edit + (1 - alpha[:, :, None]) * clean


Degradation = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
DEGRADATIONS: dict[str, Degradation] = {
    "color_uniform": color_uniform, "color_gradient": color_gradient, "texture_blur": texture_blur,
    "texture_noise": texture_noise, "texture_jpeg": texture_jpeg, "content_band": content_band,
}
