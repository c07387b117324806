"""Networks: the CM-GAN-style refiner, its discriminator, and the blocks they share."""

from pixperfect.models.discriminator import MaskConditionedDiscriminator
from pixperfect.models.projected_discriminator import ProjectedDiscriminator
from pixperfect.models.refiner import CMGANRefiner

__all__ = ["CMGANRefiner", "MaskConditionedDiscriminator", "ProjectedDiscriminator"]
