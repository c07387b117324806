"""Inference: the ``Refiner`` pipeline."""

from pixperfect.inference.refiner import Refiner

__all__ = ["Refiner"]
