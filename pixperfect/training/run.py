"""Wire a Hydra config into data, simulation, models and a Trainer; fit, evaluate, export."""

from __future__ import annotations

import logging
from collections.abc import Callable
import warnings
import signal
import sys
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from pixperfect.export import export_refiner, live_training_summary
from pixperfect.training.module import BASELINES, PixPerfectModule
from pixperfect.training.resume import continue_loggers, newest_checkpoint, prune_hpc_checkpoints
from pixperfect.training.tracking import (finish_loggers, instantiate_loggers, log_config, log_model_artifact,
                                          log_results_table, validation_rows)

log = logging.getLogger(__name__)


def warn_unserved_vae(simulation, device_simulation) -> None:
    """A VAE round trip the CPU simulation flags but no device autoencoder carries out would be
    silently skipped: say so loudly, naming both fixes."""
    texture = getattr(simulation, "texture", None)
    vae_p = getattr(texture, "vae_p", 0.0) if texture is not None else 0.0
    if vae_p > 0 and getattr(device_simulation, "model", None) is None:
        msg = (f"simulation.texture.vae_p={vae_p} flags VAE round trips, but no device autoencoder is configured, "
               "so they are SKIPPED. Set device_simulation.autoencoder=PATH_OR_HUB_ID (e.g. ../shared/weights/taef2) "
               "or simulation.texture.vae_p=0.")
        warnings.warn(f"!!! {msg} !!!", stacklevel=2)
        log.warning(msg)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, PixPerfectModule, L.Trainer]:
    L.seed_everything(cfg.seed, workers=True)
    simulation = instantiate(cfg.simulation)
    datamodule = instantiate(cfg.data, simulation=simulation)
    refiner = instantiate(cfg.model.refiner)
    loss = instantiate(cfg.loss)
    discriminators = {name: instantiate(cfg.model.discriminator) for name in loss.discriminator_names}
    device_simulation = instantiate(cfg.device_simulation) if cfg.get("device_simulation") else None
    warn_unserved_vae(simulation, device_simulation)
    module = instantiate(cfg.module)(refiner=refiner, discriminators=discriminators, loss=loss,
                                     device_simulation=device_simulation)
    n_params = sum(p.numel() for p in refiner.parameters())
    print(f"refiner {type(refiner).__name__}: {n_params / 1e6:.2f}M parameters")

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = instantiate_loggers(cfg)
    continue_loggers(loggers, cfg.paths.output_dir)  # a requeued job appends to its CSV / W&B run
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_config(loggers, cfg)  # resolved config + command-line overrides
    return datamodule, module, trainer


def fit_resumable(cfg: DictConfig, datamodule, module: PixPerfectModule, trainer: L.Trainer) -> None:
    """``trainer.fit`` that continues the newest state of its own run folder (``last.ckpt`` or a Slurm
    ``hpc_ckpt``; else ``ckpt_path``, so a requeued job that was started from ``ckpt_path`` keeps its
    own progress) and that, stopped by SIGTERM, leaves ``last.ckpt`` behind and exits with 143
    (128 + SIGTERM) instead of Lightning's 0."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = newest_checkpoint(output_dir) or cfg.get("ckpt_path")
    if ckpt_path is not None:
        print(f"resuming from {ckpt_path}")
    if trainer.is_global_zero:
        prune_hpc_checkpoints(output_dir)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SIGTERMException:
        print(f"stopped by SIGTERM after {int(module.step_count)} steps; the run continues from "
              f"{newest_checkpoint(output_dir)} when started again with the same run folder", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None


def results_table(metrics: dict[str, float]) -> str:
    """Markdown table of input / paste-back / refiner validation metrics."""
    cols = [("masked_l1", "masked L1"), ("psnr", "PSNR (dB)"), ("lpips", "LPIPS")]
    cols = [(k, name) for k, name in cols if f"val/input/{k}" in metrics]
    lines = ["| output | " + " | ".join(name for _, name in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for b in BASELINES:
        vals = [f"{metrics[f'val/{b}/{k}']:.4f}" if k != "psnr" else f"{metrics[f'val/{b}/{k}']:.2f}" for k, _ in cols]
        lines.append(f"| {b.replace('_', '-')} | " + " | ".join(vals) + " |")
    if "val/input/masked_l1" in metrics and metrics["val/input/masked_l1"] > 0:
        cut = 1.0 - metrics["val/refiner/masked_l1"] / metrics["val/input/masked_l1"]
        lines.append(f"\nrefiner cuts masked L1 by {100 * cut:.1f}% against the input")
    return "\n".join(lines)


def train(cfg: DictConfig, after_export: Callable[[list, str], dict] | None = None) -> dict[str, float]:
    """Fit, validate, export; ``after_export(loggers, export_dir)`` (rank 0, e.g. the final evaluation)
    runs while the loggers are still open and may return more metrics (and log tables with
    ``tracking.log_results_table``). The W&B run is finished at the end."""
    datamodule, module, trainer = build(cfg)
    try:
        metrics = _fit_evaluate_export(cfg, datamodule, module, trainer)
        if after_export is not None and metrics.get("export_dir"):
            metrics.update(after_export(trainer.loggers, metrics["export_dir"]) or {})
    except BaseException:
        finish_loggers(trainer.loggers, exit_code=1)
        raise
    finish_loggers(trainer.loggers)  # one W&B run per job: the next multirun job starts its own
    return metrics


def _fit_evaluate_export(cfg: DictConfig, datamodule, module: PixPerfectModule, trainer: L.Trainer) -> dict[str, float]:
    fit_resumable(cfg, datamodule, module, trainer)
    metrics: dict[str, float] = dict(module.val_results)  # the last validation of fit
    if cfg.get("evaluate") and not trainer.fast_dev_run:
        ckpt = "best" if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path else None
        trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        metrics = dict(module.val_results)
        if trainer.is_global_zero:
            print("\nvalidation (held-out, EMA refiner" + (", best checkpoint" if ckpt else "") + "):\n")
            print(results_table(metrics))
    log_results_table(trainer.loggers, "results/validation", validation_rows(metrics, BASELINES))
    if trainer.is_global_zero:
        out = cfg.get("export_dir") or str(Path(cfg.paths.output_dir) / "refiner")
        export_refiner(module.ema.module, out, validation=metrics,  # + README.md model card
                       training=live_training_summary(cfg, int(module.step_count), trainer.current_epoch))
        print(f"exported EMA refiner to {out}")
        if cfg.get("log_refiner_artifact"):
            log_model_artifact(trainer.loggers, out, metadata={"task_name": cfg.get("task_name"), **{
                k: v for k, v in metrics.items() if k.startswith("val/refiner/")}})
        metrics["export_dir"] = out
    return metrics
