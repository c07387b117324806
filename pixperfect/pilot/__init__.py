"""PILOT: training-free inpainting by latent optimisation on diffusers models (SD1.x / SD2.x)."""

from pixperfect.pilot.pipeline import PilotPipeline

__all__ = ["PilotPipeline"]
