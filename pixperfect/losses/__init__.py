"""Losses: pixel-space terms (L1, LPIPS, adversarial), the spaces they are computed in, and the
objective that combines them."""

from pixperfect.losses.adversarial import NonSaturatingAdversarialLoss
from pixperfect.losses.perceptual import LPIPSLoss, MissingPretrainedWeights
from pixperfect.losses.pixel import L1Loss
from pixperfect.losses.refiner_loss import RefinerLoss, SpaceLoss
from pixperfect.losses.spaces import IdentityMap, PixelSpace

__all__ = [
    "IdentityMap",
    "L1Loss",
    "LPIPSLoss",
    "MissingPretrainedWeights",
    "NonSaturatingAdversarialLoss",
    "PixelSpace",
    "RefinerLoss",
    "SpaceLoss",
]
