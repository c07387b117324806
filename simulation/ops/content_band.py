"""Content discontinuity: re-inpaint a narrow band around the mask boundary, then paste the
original background back, leaving a seam — the broken structures LDM edits show at their edge."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from simulation.ops.base import check_probability, check_range, numpy_rng

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """uint8 band of ``width`` px on both sides of a binary mask's boundary."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)).astype(np.uint8)


def opencv_inpainter(method: str = "telea", radius: int = 3) -> Callable[..., np.ndarray]:
    """An inpainter ``(HxWx3 uint8 image, HxW uint8 region, seed) → image`` from OpenCV."""
    if method not in METHODS:
        raise ValueError(f"content_band.method must be one of {sorted(METHODS)}; got {method!r}")

    def inpaint(image: np.ndarray, region: np.ndarray, seed: int = 0) -> np.ndarray:
        return cv2.inpaint(image, region, radius, METHODS[method])

    return inpaint


class DiffusersInpainter:
    """Re-inpaint the band with any diffusers inpainting pipeline (a pipeline object, or a local
    folder / hub id loaded with ``AutoPipelineForInpainting``). Deterministic per ``seed``.

    It runs where the simulation runs (CPU workers): fine for small runs and for checking a
    method; a large-scale run should batch it on the GPU instead.
    """

    def __init__(self, pipeline, prompt: str = "", num_inference_steps: int = 20, guidance_scale: float = 1.0,
                 strength: float = 1.0):
        if isinstance(pipeline, str):
            from diffusers import AutoPipelineForInpainting

            pipeline = AutoPipelineForInpainting.from_pretrained(pipeline)
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)
        self.pipeline = pipeline
        self.prompt = prompt
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.strength = strength

    def __call__(self, image: np.ndarray, region: np.ndarray, seed: int = 0) -> np.ndarray:
        from PIL import Image

        h, w = region.shape
        hh, ww = -(-h // 8) * 8, -(-w // 8) * 8  # LDM pipelines need multiples of 8
        pil_image = Image.fromarray(image).resize((ww, hh), Image.BICUBIC)
        pil_mask = Image.fromarray(region * 255).resize((ww, hh), Image.NEAREST)
        out = self.pipeline(prompt=self.prompt, image=pil_image, mask_image=pil_mask, height=hh, width=ww,
                            num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
                            strength=self.strength, generator=torch.Generator().manual_seed(int(seed)),
                            output_type="np").images[0]
        out = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA) if (hh, ww) != (h, w) else out


class ContentBand:
    """Re-inpaint a band of random width around the edit boundary (OpenCV Telea / Navier–Stokes,
    a ``DiffusersInpainter``, or any ``inpainter(image_uint8, region_uint8, seed) → image_uint8``).
    The pipeline's composite then pastes the background back over the band's outer half."""

    name = "content_band"

    def __init__(self, p: float = 0.5, width: Sequence[int] = (2, 10), method: str = "telea", radius: int = 3,
                 inpainter: Callable | None = None):
        self.p = check_probability(p, self.name)
        lo, hi = check_range(width, "content_band.width", 1)
        self.width = (int(lo), int(hi))
        self.inpainter = inpainter if inpainter is not None else opencv_inpainter(method, radius)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rng = numpy_rng(generator)
        width = int(rng.integers(self.width[0], self.width[1] + 1))
        m = (mask[0].numpy() > 0.5).astype(np.uint8)
        band = boundary_band(m, width)
        if band.sum() == 0:
            return image
        arr = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        filled = self.inpainter(arr, band, seed=int(rng.integers(0, 2**31))).astype(np.float32) / 255.0
        band_t = torch.from_numpy(band.astype(np.float32))[None]
        # outside the band the edit keeps its exact float values (no 8-bit quantisation)
        return band_t * torch.from_numpy(filled).permute(2, 0, 1) + (1 - band_t) * image
