"""Artifact simulation: one clean image in, a training triple (x_gt, x_gen, mask) out.

``x_gen = alpha · edit(x_gt) + (1 − alpha) · x_gt`` where ``edit`` chains the foreground
artifact ops (each applied with its probability) and ``alpha`` is the composite alpha: the
edit mask after the boundary op. The returned ``mask`` is the user's edit mask; ``alpha`` is
what the artifacts actually used.
"""

from __future__ import annotations

import torch

from simulation.masks import MaskGenerator
from simulation.ops.base import ArtifactOp
from simulation.ops.boundary import BoundarySoftening

MIN_SIDE = 16


class SimulationPipeline:
    """Compose mask generation, foreground artifact ops and boundary softening.

    Args:
        masks: draws the edit mask when a sample brings none.
        ops: foreground artifact ops in application order (``None`` entries are skipped, so a
            config can switch a family off with ``simulation.texture=null``).
        boundary: turns the edit mask into the composite alpha.
    """

    def __init__(self, masks: MaskGenerator, ops: dict[str, ArtifactOp | None] | None = None,
                 boundary: BoundarySoftening | None = None):
        self.masks = masks
        self.ops = {k: v for k, v in (ops or {}).items() if v is not None}
        self.boundary = boundary

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None,
                 mask: torch.Tensor | None = None) -> dict:
        """``image`` 3×H×W in [0, 1] (a batch N×3×H×W is simulated sample by sample)."""
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        if image.ndim == 4:
            outs = [self(img, generator, None if mask is None else mask[i]) for i, img in enumerate(image)]
            return {k: (torch.stack([o[k] for o in outs]) if torch.is_tensor(outs[0][k]) else [o[k] for o in outs])
                    for k in outs[0]}
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"simulation expects an RGB image 3×H×W (or N×3×H×W) in [0, 1]; got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"image {h}×{w} is too small to simulate edits on; need at least {MIN_SIDE}×{MIN_SIDE}")
        x_gt = image.float().clamp(0.0, 1.0)
        if mask is None:
            mask = self.masks(h, w, generator)
        else:
            mask = (mask.float().reshape(1, h, w) > 0.5).float()

        applied = []
        edit = x_gt
        for name, op in self.ops.items():
            if float(torch.rand((), generator=generator)) < op.p:
                edit = op(edit, mask, generator)
                applied.append(name)
        alpha = mask
        if self.boundary is not None and float(torch.rand((), generator=generator)) < self.boundary.p:
            alpha = self.boundary(mask, mask, generator)
            applied.append(self.boundary.name)
        x_gen = (alpha * edit + (1.0 - alpha) * x_gt).clamp(0.0, 1.0)
        return {"x_gt": x_gt, "x_gen": x_gen, "mask": mask, "alpha": alpha, "applied": applied}
