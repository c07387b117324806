"""Texture mismatch: the edit's texture differs from the photo's (VAE smoothing, blur, JPEG, noise).

The *scene* is what the photo looks like (it becomes ``x_gt``); the *edit* is what the LDM
produced inside the mask. Ops on the scene (JPEG, background noise) therefore reach the target
too, and the refiner learns to give the edit the scene's texture — not to restore a texture the
photo never had.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from simulation.ops.base import check_probability, check_range, uniform


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """3×H×W Gaussian blur (OpenCV, reflected borders)."""
    arr = image.permute(1, 2, 0).numpy()
    out = cv2.GaussianBlur(arr, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """3×H×W JPEG round trip at ``quality`` (OpenCV)."""
    arr = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", arr[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode an image")
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)


class TextureMismatch:
    """One family, several sub-ops each with its own probability (once the family is drawn):

    - ``smooth``: Gaussian blur of the edit — LDM edits are often too smooth. ``smooth_sigma`` is in
      pixels *at a 256-px short side* and scales with the sample (``sigma_reference``): a blur is a
      loss of detail relative to the image, so a 128² crop gets half the pixel sigma of a 256² one.
      Calibrated against a real autoencoder round trip (TAEF2 on CBSD68 keeps ~100% of the
      high-frequency energy at ~27 dB PSNR; σ = 1 px already removes 77% of it): see README;
    - ``jpeg``: JPEG at a quality in range on the scene — the photo's compression the edit lacks;
    - ``noise``: independent Gaussian noise of different strength on edit and scene;
    - ``resynth``: texture *replacement* — the edit's high frequencies (edit − blur) are swapped for
      the same detail shifted by a few pixels: the energy stays, the alignment is lost. This is what
      a real autoencoder round trip does (TAEF2 keeps ~100% of the HF energy at ~25 dB masked PSNR;
      README, "Calibration"), which blur, JPEG and noise do not reproduce;
    - ``vae``: a VAE round trip of the edit, flagged here and run batched on the training device
      (``simulation.DeviceSimulation``), since it is a neural op.
    """

    name = "texture"

    def __init__(self, p: float = 0.5, smooth_p: float = 0.5, smooth_sigma: Sequence[float] = (0.3, 0.8),
                 jpeg_p: float = 0.5, jpeg_quality: Sequence[int] = (30, 90), noise_p: float = 0.5,
                 noise_sigma_edit: Sequence[float] = (0.0, 0.02), noise_sigma_scene: Sequence[float] = (0.0, 0.04),
                 vae_p: float = 0.5, sigma_reference: int = 256, resynth_p: float = 0.0,
                 resynth_sigma: Sequence[float] = (1.0, 2.0), resynth_shift: Sequence[float] = (2.0, 6.0),
                 jpeg_backend: str = "opencv"):
        self.p = check_probability(p, "texture")
        self.smooth_p = check_probability(smooth_p, "texture.smooth_p")
        self.smooth_sigma = check_range(smooth_sigma, "texture.smooth_sigma", 0.0)
        self.jpeg_p = check_probability(jpeg_p, "texture.jpeg_p")
        self.jpeg_quality = check_range(jpeg_quality, "texture.jpeg_quality", 1, 100)
        self.noise_p = check_probability(noise_p, "texture.noise_p")
        self.noise_sigma_edit = check_range(noise_sigma_edit, "texture.noise_sigma_edit", 0.0)
        self.noise_sigma_scene = check_range(noise_sigma_scene, "texture.noise_sigma_scene", 0.0)
        self.vae_p = check_probability(vae_p, "texture.vae_p")
        if sigma_reference <= 0:
            raise ValueError(f"texture.sigma_reference must be a positive side length in pixels; got {sigma_reference}")
        self.sigma_reference = sigma_reference
        self.resynth_p = check_probability(resynth_p, "texture.resynth_p")
        if jpeg_backend not in ("opencv", "albumentations"):
            raise ValueError(f"texture.jpeg_backend must be 'opencv' or 'albumentations'; got {jpeg_backend!r}")
        # albumentations' ImageCompression is 1.5–2.5× faster (python -m evaluation.bench_albu) but
        # hands OpenCV the RGB array as if it were BGR, so its chroma subsampling mixes the wrong
        # channels (max pixel difference 0.22 at equal PSNR): opencv stays the default.
        self.jpeg_backend = jpeg_backend
        self.resynth_sigma = check_range(resynth_sigma, "texture.resynth_sigma", 0.0)
        self.resynth_shift = check_range(resynth_shift, "texture.resynth_shift", 0.0)

    def _resynth(self, edit: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        scale = min(edit.shape[-2:]) / self.sigma_reference
        low = gaussian_blur(edit, max(1e-3, uniform(generator, *self.resynth_sigma) * scale))
        shift = max(1, round(uniform(generator, *self.resynth_shift) * scale))
        angle = uniform(generator, 0.0, 2 * np.pi)
        dy, dx = round(shift * np.sin(angle)), round(shift * np.cos(angle))
        detail = torch.roll(edit - low, shifts=(dy, dx), dims=(-2, -1))
        return (low + detail).clamp(0.0, 1.0)

    def __call__(self, scene: torch.Tensor, edit: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, bool, list[str]]:
        """Returns (scene, edit, vae_requested, names of the sub-ops applied)."""
        draws = torch.rand(4, generator=generator).tolist()  # fixed consumption: one draw per sub-op
        applied = []
        if draws[0] < self.smooth_p:
            scale = min(edit.shape[-2:]) / self.sigma_reference
            edit = gaussian_blur(edit, max(1e-3, uniform(generator, *self.smooth_sigma) * scale))
            applied.append("smooth")
        if draws[1] < self.jpeg_p:
            q = int(round(uniform(generator, *self.jpeg_quality)))
            if self.jpeg_backend == "albumentations":
                from simulation.ops import albu

                scene = albu.jpeg(scene, q, generator)
            else:
                scene = jpeg(scene, q)
            applied.append("jpeg")
        if draws[2] < self.noise_p:
            s_edit, s_scene = uniform(generator, *self.noise_sigma_edit), uniform(generator, *self.noise_sigma_scene)
            scene = (scene + s_scene * torch.randn(scene.shape, generator=generator)).clamp(0.0, 1.0)
            edit = (edit + s_edit * torch.randn(edit.shape, generator=generator)).clamp(0.0, 1.0)
            applied.append("noise")
        if self.resynth_p > 0 and float(torch.rand((), generator=generator)) < self.resynth_p:
            edit = self._resynth(edit, generator)
            applied.append("resynth")
        vae = draws[3] < self.vae_p
        if vae:
            applied.append("vae")
        return scene, edit, vae, applied

