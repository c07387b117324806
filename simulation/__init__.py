"""Artifact simulation: masks, artifact ops and their composition into training triples.

CPU ops run per sample in DataLoader workers (``SimulationPipeline``); neural ops (VAE round
trips) run batched on the training device (``DeviceSimulation``).
"""

from simulation.device import DeviceSimulation
from simulation.masks import MaskGenerator
from simulation.ops.boundary import BoundarySoftening
from simulation.ops.color_shift import ColorShift
from simulation.ops.content_band import ContentBand
from simulation.ops.texture import TextureMismatch
from simulation.pipeline import SimulationPipeline

__all__ = ["BoundarySoftening", "ColorShift", "ContentBand", "DeviceSimulation", "MaskGenerator",
           "SimulationPipeline", "TextureMismatch"]
