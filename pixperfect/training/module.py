"""The training step: manual GAN optimisation of the refiner in Lightning 2.x.

Per batch: one refiner forward, reused (detached) for the discriminator step and (with
gradients) for the generator step; lazy R1 every k steps; gradient clipping through
``self.clip_gradients``; EMA of the refiner after the G step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import lightning as L
import torch
from torch import nn

from pixperfect.inference.region import composite_edit
from pixperfect.losses.refiner_loss import RefinerLoss
from pixperfect.training.ema import ema_model
from pixperfect.training.image_log import comparison_grid, log_grid
from pixperfect.metrics import bg_mse, delta_e, masked_l1, masked_psnr, paste_back, psnr
from pixperfect.utils import stable_seed

BASELINES = ("input", "paste_back", "refiner")


class PixPerfectModule(L.LightningModule):
    """Trains a refiner against one discriminator per adversarial space.

    Args:
        refiner: the generator (``CMGANRefiner``).
        discriminators: name → discriminator, one per name in ``loss.discriminator_names``.
        loss: the ``RefinerLoss``.
        optimizer_g, optimizer_d: partials taking parameters (Hydra ``_partial_: true``); default
            Adam(lr 5e-4, betas (0.9, 0.999)) — see configs/train.yaml for why not StyleGAN's β1 = 0.
        ema_decay: EMA decay of the refiner weights used for validation and export.
        grad_clip: max gradient norm for both optimizers (0 = off).
        image_log_every: log an x_gen | x_pred | x_gt | mask grid every N steps (0 = off).
        device_simulation: optional batched artifact ops run on the training device in
            ``on_after_batch_transfer`` (neural ops: VAE round trips, learned inpainters).
        seed: base seed of the per-step noise generator.
    """

    def __init__(
        self,
        refiner: nn.Module,
        discriminators: Mapping[str, nn.Module],
        loss: RefinerLoss,
        optimizer_g: Callable | None = None,
        optimizer_d: Callable | None = None,
        ema_decay: float = 0.999,
        grad_clip: float = 1.0,
        image_log_every: int = 500,
        device_simulation: Callable | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.automatic_optimization = False
        missing = set(loss.discriminator_names) - set(discriminators)
        if missing:
            raise ValueError(f"the loss needs discriminators {sorted(missing)} that were not given")
        if loss.wants_prior_parts and not (getattr(refiner, "seam_gain", False)
                                           and callable(getattr(refiner, "forward_parts", None))):
            raise ValueError("loss.seam_scale.weight > 0 supervises the seam prior's scale, but the refiner has none: "
                             "set model.refiner.seam_prior=true and model.refiner.seam_gain=true, or loss.seam_scale.weight=0")
        self.refiner = refiner
        self.discriminators = nn.ModuleDict(dict(discriminators))
        self.loss = loss
        self.ema = ema_model(refiner, ema_decay)
        default = partial(torch.optim.Adam, lr=5e-4, betas=(0.9, 0.999))
        self.optimizer_g = optimizer_g if optimizer_g is not None else default
        self.optimizer_d = optimizer_d if optimizer_d is not None else default
        self.grad_clip = grad_clip
        self.image_log_every = image_log_every
        self.device_simulation = device_simulation
        self.seed = seed
        # Counts training batches (Lightning's global_step counts optimizer steps, two per batch).
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.skipped_total = 0
        self.val_results: dict[str, float] = {}

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self):
        opt_g = self.optimizer_g(self.refiner.parameters())
        if len(self.discriminators) == 0:
            return opt_g
        return opt_g, self.optimizer_d(self.discriminators.parameters())

    def on_fit_start(self) -> None:
        counts = {
            "params/refiner_M": sum(p.numel() for p in self.refiner.parameters()) / 1e6,
            **{f"params/discriminator_{k}_M": sum(p.numel() for p in d.parameters()) / 1e6
               for k, d in self.discriminators.items()},
        }
        for logger in self.loggers:
            logger.log_hyperparams(counts)

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self._trainer
        running = trainer is not None and (trainer.training or trainer.validating or trainer.sanity_checking)
        if self.device_simulation is not None and running:
            batch = self.device_simulation(batch, generator=self._generator("device_sim"))
        return batch

    def _generator(self, tag: str = "") -> torch.Generator:
        rank = self.global_rank if self.trainer is not None else 0
        seed = stable_seed(self.seed, int(self.step_count), rank, tag)
        return torch.Generator(device=self.device).manual_seed(seed)

    # ------------------------------------------------------------------ train
    def forward(self, x_gen: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.refiner(x_gen, mask)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        step = int(self.step_count)
        optimizers = self.optimizers()
        opt_g, opt_d = (optimizers, None) if not isinstance(optimizers, (list, tuple)) else optimizers
        g = self._generator("train")

        parts = None  # the one generator forward; with the seam-scale term, with the prior's parts
        if self.loss.wants_prior_parts:
            parts = self.refiner.forward_parts(batch["x_gen"], batch["mask"])
            x_pred = parts.image
        else:
            x_pred = self.refiner(batch["x_gen"], batch["mask"])
        maps = self.loss.fit_maps(x_pred, batch, step, generator=g)
        logs: dict[str, torch.Tensor] = {}

        if opt_d is not None:
            self.toggle_optimizer(opt_d)
            d_loss, d_logs = self.loss.discriminator_loss(
                x_pred.detach(), batch, maps, self.discriminators, step, generator=g,
                r1=self.loss.adversarial.wants_r1(step),
            )
            if d_loss.requires_grad:
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(d_loss)
                if self.grad_clip > 0:
                    self.clip_gradients(opt_d, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
                opt_d.step()
            self.untoggle_optimizer(opt_d)
            logs.update({f"train/{k}": v for k, v in d_logs.items()})

        self.toggle_optimizer(opt_g)
        g_loss, g_logs = self.loss.generator_loss(x_pred, batch, maps, self.discriminators, step, generator=g,
                                                  parts=parts)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        if self.grad_clip > 0:
            self.clip_gradients(opt_g, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.ema.update_parameters(self.refiner)
        self.step_count += 1

        logs.update({f"train/{k}": v for k, v in g_logs.items() if k != "g_total"})
        logs["train/masked_l1"] = masked_l1(x_pred.detach(), batch["x_gt"], batch["mask"]).mean()
        n = batch["x_gen"].shape[0]
        self.log_dict(logs, prog_bar=False, batch_size=n)
        self.log("train/g_total", g_logs["g_total"], prog_bar=True, batch_size=n)
        if "n_skipped" in batch:
            self.skipped_total += int(batch["n_skipped"])
            self.log("data/skipped_total", float(self.skipped_total), reduce_fx="sum", sync_dist=True, batch_size=n)
        if self.image_log_every and step % self.image_log_every == 0:
            grid = comparison_grid([batch["x_gen"], x_pred, batch["x_gt"], batch["mask"]])
            log_grid(self.trainer, "train/samples", grid, step, "x_gen | x_pred | x_gt | mask")

    # ------------------------------------------------------------- validation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x_gt, x_gen, mask = batch["x_gt"], batch["x_gen"], batch["mask"]
        outputs = {
            "input": x_gen,
            "paste_back": paste_back(x_gen, x_gt, mask),
            # what users get: Refiner's default region="edit" keeps the background (same numbers as evaluate)
            "refiner": composite_edit(self.ema.module(x_gen, mask), x_gen, mask),
        }
        n = x_gen.shape[0]
        lp = self.loss.lpips
        for name, image in outputs.items():  # the same metric functions as `python -m evaluation.evaluate`
            for metric, fn in (("masked_l1", masked_l1), ("masked_psnr", masked_psnr), ("delta_e", delta_e),
                               ("bg_mse", bg_mse)):
                self.log(f"val/{name}/{metric}", fn(image, x_gt, mask).mean(), batch_size=n, sync_dist=True)
            self.log(f"val/{name}/psnr", psnr(image, x_gt).mean(), batch_size=n, sync_dist=True)
            if lp is not None and lp.available:
                self.log(f"val/{name}/lpips", lp(image, x_gt)[0], batch_size=n, sync_dist=True)
        # the checkpoint monitor
        self.log("val/masked_l1", masked_l1(outputs["refiner"], x_gt, mask).mean(), batch_size=n, sync_dist=True,
                 prog_bar=True)
        if batch_idx == 0 and self.image_log_every:
            grid = comparison_grid([x_gen, outputs["refiner"], x_gt, mask])
            log_grid(self.trainer, "val/samples", grid, int(self.step_count), "x_gen | refiner(EMA) | x_gt | mask")

    def on_validation_epoch_end(self) -> None:
        self.val_results = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}

    # ------------------------------------------------------------- checkpoint
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # the corrupt-sample count goes on from where the interrupted run stopped
        self.skipped_total = int(checkpoint.get("pixperfect_data", {}).get("skipped_total", 0))
        self._check_seam_prior(checkpoint)

    def _check_seam_prior(self, checkpoint: dict) -> None:
        """A run resumed from a checkpoint whose seam prior was computed otherwise would change its input
        mid-training without a word (checkpoints from before ``seam_shrinkage`` existed used Wiener, those
        from before ``seam_cg`` the push-pull fill alone): refuse, naming the override that continues the
        run as it was trained."""
        saved = checkpoint.get("pixperfect", {}).get("refiner_config")
        upgrade = getattr(type(self.refiner), "upgrade_config", None)
        if not saved or upgrade is None or not saved.get("seam_prior"):
            return
        saved = upgrade(dict(saved))
        for key in ("seam_shrinkage", "seam_cg"):
            was, now = saved.get(key), getattr(self.refiner, key, None)
            if was is not None and now is not None and was != now:
                raise ValueError(f"this checkpoint's seam prior used {key}={was!r}, the run's config says {now!r}: "
                                 f"resume with model.refiner.{key}={was} (or start a new run)")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pixperfect_data"] = {"skipped_total": self.skipped_total}
        # Enough to rebuild the refiner without Hydra (see pixperfect.export).
        checkpoint["pixperfect"] = {
            "refiner_class": f"{type(self.refiner).__module__}.{type(self.refiner).__qualname__}",
            "refiner_config": dict(getattr(self.refiner, "config", {})),
            "val_results": dict(self.val_results),  # the latest validation, for the export's model card
        }
