"""The refiner's objective: per space, ``w1·L1 + w2·LPIPS + w3·adversarial`` between mapped images.

``L = Σ_spaces weight_s(step) · (w1·L1 + w2·LPIPS + w3·adv)``; the pixel space has weight 1,
spaces like the discriminative one are off during a warm-up and then ramped in.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from pixperfect.losses.adversarial import NonSaturatingAdversarialLoss
from pixperfect.losses.perceptual import LPIPSLoss
from pixperfect.losses.pixel import L1Loss
from pixperfect.losses.seam_scale import SeamScaleLoss
from pixperfect.losses.spaces import PixelSpace, SpaceMap


class SpaceLoss(nn.Module):
    """The loss terms of one space and the schedule that weights it.

    Args:
        space: maps images into the space (``PixelSpace``, ``DiscriminativeSpace``, …).
        l1_weight, lpips_weight, adv_weight: w1, w2, w3 (paper: 64, 5, 1).
        discriminator: name of the discriminator judging this space; two spaces naming the
            same one share it.
        warmup_steps: zero weight before this step.
        ramp_steps: then a linear ramp from 0 to 1 over this many steps.
    """

    def __init__(
        self,
        space: nn.Module | None = None,
        l1_weight: float = 64.0,
        lpips_weight: float = 5.0,
        adv_weight: float = 1.0,
        discriminator: str = "pixel",
        warmup_steps: int = 0,
        ramp_steps: int = 0,
    ):
        super().__init__()
        self.space = space if space is not None else PixelSpace()
        self.l1_weight = l1_weight
        self.lpips_weight = lpips_weight
        self.adv_weight = adv_weight
        self.discriminator = discriminator
        self.warmup_steps = warmup_steps
        self.ramp_steps = ramp_steps

    def schedule(self, step: int) -> float:
        """Weight of this space at a global step: 0 in warm-up, then linear to 1."""
        if step < self.warmup_steps:
            return 0.0
        if self.ramp_steps <= 0:
            return 1.0
        return min(1.0, (step - self.warmup_steps + 1) / self.ramp_steps)


class RefinerLoss(nn.Module):
    """All spaces' terms, sharing one L1, one LPIPS and one adversarial loss definition.

    ``seam_scale`` (optional, once, outside the spaces) supervises the seam prior's scale directly
    when the refiner returns its parts (``CMGANRefiner.forward_parts``).
    """

    def __init__(
        self,
        spaces: Mapping[str, SpaceLoss],
        lpips: LPIPSLoss | None = None,
        adversarial: NonSaturatingAdversarialLoss | None = None,
        l1: L1Loss | None = None,
        seam_scale: SeamScaleLoss | None = None,
    ):
        super().__init__()
        if not spaces:
            raise ValueError("RefinerLoss needs at least one space (e.g. spaces.pixel)")
        self.spaces = nn.ModuleDict(dict(spaces))
        self.lpips = lpips
        self.adversarial = adversarial if adversarial is not None else NonSaturatingAdversarialLoss()
        self.l1 = l1 if l1 is not None else L1Loss()
        self.seam_scale = seam_scale

    @property
    def wants_prior_parts(self) -> bool:
        """Whether the generator loss needs the seam prior's offset and scale."""
        return self.seam_scale is not None and self.seam_scale.weight > 0

    @property
    def discriminator_names(self) -> list[str]:
        """Discriminators this objective needs (those of spaces with an adversarial term)."""
        return sorted({s.discriminator for s in self.spaces.values() if s.adv_weight > 0})

    def active(self, step: int) -> dict[str, float]:
        """Spaces with a non-zero weight at this step (and whose space could be built)."""
        return {name: s.schedule(step) for name, s in self.spaces.items()
                if s.schedule(step) > 0 and getattr(s.space, "available", True)}

    @torch.no_grad()
    def fit_maps(self, x_pred: torch.Tensor, batch: Mapping[str, torch.Tensor], step: int,
                 generator: torch.Generator | None = None) -> dict[str, SpaceMap]:
        """Fit each active space's map once per step, on the detached prediction."""
        return {
            name: self.spaces[name].space.fit(x_pred.detach(), batch["x_gt"], batch["mask"], generator=generator)
            for name in self.active(step)
        }

    def generator_loss(self, x_pred, batch, maps: Mapping[str, SpaceMap], discriminators: Mapping[str, nn.Module],
                       step: int, generator: torch.Generator | None = None, parts=None):
        """``parts``: the refiner's ``forward_parts`` output (needed when ``wants_prior_parts``)."""
        x_gt, mask = batch["x_gt"], batch["mask"]
        total = x_pred.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        if self.wants_prior_parts:
            if parts is None or parts.scale is None:
                raise ValueError("loss.seam_scale supervises the seam prior's scale: the refiner needs "
                                 "model.refiner.seam_prior=true and model.refiner.seam_gain=true (or set loss.seam_scale.weight=0)")
            total, scale_logs = self.seam_scale(parts.scale, parts.offset, batch["x_gen"], x_gt, mask, parts.delta)
            logs.update(scale_logs)
        for name, weight in self.active(step).items():
            term = self.spaces[name]
            f = maps[name]
            if not getattr(term.space, "detach_coefficients", True):
                f = term.space.refit_with_grad(f, x_pred, x_gt, mask)
            pred_s, gt_s = f(x_pred), f(x_gt)
            loss_l1, l1_logs = self.l1(pred_s, gt_s, mask, batch.get("x_gen"), x_gt)  # weights from pixel space
            space_loss = term.l1_weight * loss_l1
            logs.update({f"{name}/{k}": v for k, v in l1_logs.items()})  # l1 (per pixel) and l1_lowpass apart
            if term.lpips_weight > 0 and self.lpips is not None and self.lpips.available:
                loss_lp, _ = self.lpips(f.to_valid_range(pred_s), f.to_valid_range(gt_s))
                space_loss = space_loss + term.lpips_weight * loss_lp
                logs[f"{name}/lpips"] = loss_lp.detach()
            if term.adv_weight > 0:
                d = discriminators[term.discriminator]
                fake = self.adversarial.noisy(f.to_valid_range(pred_s), generator)
                loss_adv, _ = self.adversarial.generator_loss(d(fake, mask))
                space_loss = space_loss + term.adv_weight * loss_adv
                logs[f"{name}/g_adv"] = loss_adv.detach()
            logs[f"{name}/weight"] = torch.tensor(weight)
            logs[f"{name}/total"] = space_loss.detach()
            total = total + weight * space_loss
        logs["g_total"] = total.detach()
        return total, logs

    def discriminator_loss(self, x_pred, batch, maps: Mapping[str, SpaceMap], discriminators: Mapping[str, nn.Module],
                           step: int, generator: torch.Generator | None = None, r1: bool = False):
        """D loss on the detached prediction; with ``r1`` the lazy R1 penalty on real inputs is added."""
        x_gt, mask = batch["x_gt"], batch["mask"]
        total = x_pred.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for name in self.active(step):
            term = self.spaces[name]
            if term.adv_weight <= 0:
                continue
            d = discriminators[term.discriminator]
            f = maps[name]
            real = self.adversarial.noisy(f.to_valid_range(f(x_gt)), generator)
            fake = self.adversarial.noisy(f.to_valid_range(f(x_pred.detach())), generator)
            if r1:
                real = real.detach().requires_grad_(True)
            real_logits = d(real, mask)
            loss, dlogs = self.adversarial.discriminator_loss(real_logits, d(fake, mask))
            logs.update({f"{name}/{k}": v for k, v in dlogs.items()})
            if r1:
                loss_r1, r1logs = self.adversarial.r1_penalty(real_logits, real)
                loss = loss + loss_r1
                logs.update({f"{name}/{k}": v for k, v in r1logs.items()})
            total = total + loss
        return total, logs
