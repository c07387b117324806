"""PILOT: training-free inpainting by latent optimisation on diffusers models (SD1.x / 2.x / SDXL)."""

from pixperfect.pilot.pipeline import PilotPipeline
from pixperfect.pilot.pipeline_xl import PilotXLPipeline

__all__ = ["PilotPipeline", "PilotXLPipeline"]
