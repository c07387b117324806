"""Global drift: a subtle tone/colour change of the *whole* image, not pasted back.

When an LDM edit is decoded from latents, the background is re-decoded too ("latent
entanglement"): it keeps its content but drifts slightly in tone and colour. A refiner run with
``region="full"`` must undo that; this op makes such samples on the CPU (a whole-image VAE round
trip on the device is the neural version).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from simulation.ops.base import check_probability, check_range, uniform


class GlobalDrift:
    """Per-channel gain and offset applied to every pixel (defaults: ±3% gain, ±0.015 offset)."""

    name = "global_drift"

    def __init__(self, p: float = 0.1, gain: Sequence[float] = (0.97, 1.03), offset: Sequence[float] = (-0.015, 0.015)):
        self.p = check_probability(p, self.name)
        self.gain = check_range(gain, "global_drift.gain", 0.0)
        self.offset = check_range(offset, "global_drift.offset", -1.0, 1.0)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        gain = torch.tensor([uniform(generator, *self.gain) for _ in range(3)])[:, None, None]
        offset = torch.tensor([uniform(generator, *self.offset) for _ in range(3)])[:, None, None]
        return (image * gain + offset).clamp(0.0, 1.0)
