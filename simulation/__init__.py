"""Artifact simulation: masks, artifact ops and their composition into training triples."""

from simulation.masks import MaskGenerator
from simulation.ops.boundary import BoundarySoftening
from simulation.ops.color_shift import ColorShift
from simulation.pipeline import SimulationPipeline

__all__ = ["BoundarySoftening", "ColorShift", "MaskGenerator", "SimulationPipeline"]
