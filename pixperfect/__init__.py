"""PixPerfect: a pixel-space refiner for latent-diffusion local edits.

``from pixperfect import Refiner`` is all a user needs to run an exported refiner.
"""

from pixperfect.inference import Refiner

__all__ = ["Refiner"]
__version__ = "0.1.0"
