"""Artifact simulation: one clean image in, a training triple (x_gt, x_gen, mask) out.

Two images are built from the clean photo: the *scene* (what the photo looks like, after the
background texture ops; it becomes ``x_gt``) and the *edit* (what an LDM would have produced
inside the mask: colour shift, smoothing, noise, a re-inpainted boundary band). They are
composited through the composite alpha — the edit mask after the boundary op:

    x_gen = alpha · edit + (1 − alpha) · scene,     x_gt = scene

The returned ``mask`` is the user's edit mask; ``alpha`` is what the artifacts used. Each
family is drawn with its probability in a fixed order (one draw each, applied or not), so the
result is a pure function of the image and the generator.
"""

from __future__ import annotations

import torch

from simulation.masks import MaskGenerator
from simulation.ops.boundary import BoundarySoftening
from simulation.ops.color_shift import ColorShift
from simulation.ops.content_band import ContentBand
from simulation.ops.global_drift import GlobalDrift
from simulation.ops.texture import TextureMismatch

MIN_SIDE = 16
FAMILIES = ("color_shift", "texture", "content_band", "boundary", "global_drift")


class SimulationPipeline:
    """Compose the artifact families (paper defaults: content band 0.5, colour 0.8, texture 0.5,
    boundary 1.0). A family set to ``None`` is off.

    ``clean_p``: share of *clean* samples (``x_gen == x_gt``, a mask still drawn) — a refiner must
    learn to leave a good edit alone. ``global_drift``: a subtle change of the *whole* image, not
    pasted back (a background re-decoded with the edit), applied last. ``paste_p``: share of samples
    pasted into the scene through the binarised mask (nothing outside it changes).
    """

    def __init__(self, masks: MaskGenerator, color_shift: ColorShift | None = None,
                 texture: TextureMismatch | None = None, content_band: ContentBand | None = None,
                 boundary: BoundarySoftening | None = None, global_drift: GlobalDrift | None = None,
                 clean_p: float = 0.0, alone_p: float = 0.0, paste_p: float = 0.0):
        if not 0.0 <= clean_p <= 1.0:
            raise ValueError(f"simulation.clean_p must be in [0, 1]; got {clean_p}")
        if not 0.0 <= alone_p <= 1.0:
            raise ValueError(f"simulation.alone_p must be in [0, 1]; got {alone_p}")
        if not 0.0 <= paste_p <= 1.0:
            raise ValueError(f"simulation.paste_p must be in [0, 1]; got {paste_p}")
        self.clean_p = float(clean_p)
        # With this probability the composite is pasted into the scene through the user's mask (binarised
        # at 0.5): nothing of the edit spills outside it, as when a user refines with the original
        # (`Refiner(original=…)`) or a pipeline pastes back through the mask. A feathered alpha then
        # shows as a ramp inside the mask and a step on it. Such a sample gets no global drift.
        self.paste_p = float(paste_p)
        # With this probability an artifact sample carries ONE family (colour shift, texture, content band
        # or global drift, chosen in proportion to their p), as the benchmark's samples do: drawn
        # independently, a content band comes with a colour cast 80% of the time, so a boundary jump is
        # nearly always worth correcting in training and never in a band-only edit.
        self.alone_p = float(alone_p)
        self.global_drift = global_drift
        self.masks = masks
        self.color_shift = color_shift
        self.texture = texture
        self.content_band = content_band
        self.boundary = boundary

    def _draw(self, family, generator: torch.Generator) -> bool:
        hit = float(torch.rand((), generator=generator)) < (family.p if family is not None else 0.0)
        return hit and family is not None

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None,
                 mask: torch.Tensor | None = None) -> dict:
        """``image`` 3×H×W in [0, 1] (a batch N×3×H×W is simulated sample by sample). ``mask``: the
        sample's own object mask, used with probability ``masks.object_p``."""
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
        clean = image.float().clamp(0.0, 1.0)

        use_object = float(torch.rand((), generator=generator)) < self.masks.object_p
        if mask is not None and use_object:
            mask = (mask.float().reshape(1, h, w) > 0.5).float()
        else:
            mask = self.masks(h, w, generator)

        applied: list[str] = []
        scene, edit, vae = clean, clean, False
        if self.clean_p > 0 and float(torch.rand((), generator=generator)) < self.clean_p:
            return {"x_gt": clean, "x_gen": clean.clone(), "mask": mask, "alpha": mask,
                    "vae": torch.tensor(False), "applied": ["clean"]}
        only = None  # the one family of a single-family sample (alone_p), else every family is drawn
        if self.alone_p > 0 and float(torch.rand((), generator=generator)) < self.alone_p:
            families = [f for f in (self.color_shift, self.texture, self.content_band, self.global_drift)
                        if f is not None and f.p > 0]
            if families:
                weights = torch.tensor([f.p for f in families], dtype=torch.float64)
                only = families[int(torch.multinomial(weights, 1, generator=generator))]
        draw = (lambda family: family is only) if only is not None else (lambda family: self._draw(family, generator))
        if draw(self.color_shift):
            edit = self.color_shift(edit, mask, generator)
            applied.append("color_shift")
        if draw(self.texture):
            scene, edit, vae, sub = self.texture(scene, edit, mask, generator)
            applied.extend(f"texture.{s}" for s in sub)
        if draw(self.content_band):
            edit = self.content_band(edit, mask, generator)
            applied.append("content_band")
        alpha = mask
        if self._draw(self.boundary, generator):
            alpha = self.boundary(mask, mask, generator)
            applied.append("boundary")
        pasted = self.paste_p > 0 and float(torch.rand((), generator=generator)) < self.paste_p
        if pasted:  # paste_p = 0 draws nothing, so every earlier sample stays as it was
            alpha = alpha * (mask > 0.5)
            applied.append("paste")
        # an edit no family changed is the scene itself: paste it exactly (α·x + (1 − α)·x is not x in floats)
        x_gen = scene.clone() if edit is scene else (alpha * edit + (1.0 - alpha) * scene).clamp(0.0, 1.0)
        if draw(self.global_drift) and not pasted:
            x_gen = self.global_drift(x_gen, mask, generator)
            applied.append("global_drift")
        if not set(applied) - {"boundary", "paste"}:  # nothing but the seam's shape was drawn: a clean sample
            applied.append("clean")
        return {"x_gt": scene, "x_gen": x_gen, "mask": mask, "alpha": alpha,
                "vae": torch.tensor(vae), "applied": applied}
