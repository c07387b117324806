"""Non-uniform colour shift: the colour/tone drift LDM edits show inside the mask."""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia.enhance as KE
import torch

from simulation.ops.alpha_maps import KINDS, gradient_alpha
from simulation.ops.base import check_probability, check_range, uniform


class ColorShift:
    """Brightness/contrast/saturation/hue jitter, gamma and per-channel gains (kornia.enhance),
    blended into the image through a random gradient alpha map. It returns a full shifted image;
    the pipeline composites it through the edit's alpha, so only the masked region changes.

    Ranges are multiplicative factors, except ``brightness`` (an additive shift of value − 1) and
    ``hue`` (a fraction of a full turn, ±).
    """

    name = "color_shift"

    def __init__(
        self,
        p: float = 0.8,
        brightness: Sequence[float] = (0.85, 1.15),
        contrast: Sequence[float] = (0.85, 1.15),
        saturation: Sequence[float] = (0.8, 1.2),
        hue: Sequence[float] = (-0.03, 0.03),
        gamma: Sequence[float] = (0.85, 1.15),
        channel_gain: Sequence[float] = (0.9, 1.1),
        alpha_kinds: Sequence[str] = KINDS,
        min_alpha: float = 0.3,
    ):
        self.p = check_probability(p, self.name)
        self.brightness = check_range(brightness, "color_shift.brightness", 0.0)
        self.contrast = check_range(contrast, "color_shift.contrast", 0.0)
        self.saturation = check_range(saturation, "color_shift.saturation", 0.0)
        self.hue = check_range(hue, "color_shift.hue", -0.5, 0.5)
        self.gamma = check_range(gamma, "color_shift.gamma", 1e-3)
        self.channel_gain = check_range(channel_gain, "color_shift.channel_gain", 0.0)
        bad = set(alpha_kinds) - set(KINDS)
        if bad:
            raise ValueError(f"color_shift.alpha_kinds has unknown kinds {sorted(bad)}; expected a subset of {KINDS}")
        self.alpha_kinds = tuple(alpha_kinds)
        self.min_alpha = min_alpha

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = image[None]
        x = KE.adjust_brightness(x, uniform(generator, *self.brightness) - 1.0)
        x = KE.adjust_contrast(x, uniform(generator, *self.contrast))
        x = KE.adjust_saturation(x, uniform(generator, *self.saturation))
        x = KE.adjust_hue(x, uniform(generator, *self.hue) * 2 * math.pi)
        x = KE.adjust_gamma(x.clamp(0, 1), uniform(generator, *self.gamma))
        gains = torch.tensor([uniform(generator, *self.channel_gain) for _ in range(3)])
        shifted = (x[0] * gains[:, None, None]).clamp(0.0, 1.0)
        alpha = gradient_alpha(image.shape[-2], image.shape[-1], generator, self.alpha_kinds, self.min_alpha)
        return image + alpha * (shifted - image)
