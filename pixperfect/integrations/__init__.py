"""Put a PixPerfect refiner behind other tools' outputs (diffusers inpainting pipelines)."""

from pixperfect.integrations.diffusers import RefinedInpaintPipeline, refine_pipeline_output

__all__ = ["RefinedInpaintPipeline", "refine_pipeline_output"]
