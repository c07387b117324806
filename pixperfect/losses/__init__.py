"""Losses: the terms (L1, LPIPS, adversarial), the spaces they are computed in (pixel, polynomial
discriminative, Haar, VGG), and the objective that combines them."""

from pixperfect.losses.adversarial import NonSaturatingAdversarialLoss
from pixperfect.losses.discriminative import DiscriminativeSpace
from pixperfect.losses.haar import HaarSpace
from pixperfect.losses.perceptual import LPIPSLoss, MissingPretrainedWeights
from pixperfect.losses.pixel import L1Loss
from pixperfect.losses.refiner_loss import RefinerLoss, SpaceLoss
from pixperfect.losses.seam_scale import SeamScaleLoss
from pixperfect.losses.spaces import IdentityMap, PixelSpace
from pixperfect.losses.tone_map import PolynomialToneMap
from pixperfect.losses.vgg_space import VGGFeatureSpace

__all__ = [
    "DiscriminativeSpace",
    "HaarSpace",
    "IdentityMap",
    "L1Loss",
    "LPIPSLoss",
    "MissingPretrainedWeights",
    "NonSaturatingAdversarialLoss",
    "PixelSpace",
    "PolynomialToneMap",
    "RefinerLoss",
    "SeamScaleLoss",
    "SpaceLoss",
    "VGGFeatureSpace",
]
