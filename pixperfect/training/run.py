"""Wire a Hydra config into data, simulation, models and a Trainer; fit, evaluate, export."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pixperfect.export import export_refiner
from pixperfect.training.module import BASELINES, PixPerfectModule

log = logging.getLogger(__name__)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, PixPerfectModule, L.Trainer]:
    L.seed_everything(cfg.seed, workers=True)
    simulation = instantiate(cfg.simulation)
    datamodule = instantiate(cfg.data, simulation=simulation)
    refiner = instantiate(cfg.model.refiner)
    loss = instantiate(cfg.loss)
    discriminators = {name: instantiate(cfg.model.discriminator) for name in loss.discriminator_names}
    device_simulation = instantiate(cfg.device_simulation) if cfg.get("device_simulation") else None
    module = instantiate(cfg.module)(refiner=refiner, discriminators=discriminators, loss=loss,
                                     device_simulation=device_simulation)
    n_params = sum(p.numel() for p in refiner.parameters())
    print(f"refiner {type(refiner).__name__}: {n_params / 1e6:.2f}M parameters")

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return datamodule, module, trainer


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


def train(cfg: DictConfig) -> dict[str, float]:
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics: dict[str, float] = {}
    if cfg.get("evaluate") and not trainer.fast_dev_run:
        ckpt = "best" if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path else None
        trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        metrics = dict(module.val_results)
        if trainer.is_global_zero:
            print("\nvalidation (held-out, EMA refiner" + (", best checkpoint" if ckpt else "") + "):\n")
            print(results_table(metrics))
    if trainer.is_global_zero:
        out = cfg.get("export_dir") or str(Path(cfg.paths.output_dir) / "refiner")
        export_refiner(module.ema.module, out)
        print(f"exported EMA refiner to {out}")
        metrics["export_dir"] = out
    return metrics
