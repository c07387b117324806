"""Experiment tracking around the Lightning loggers: one W&B run per (multirun) job with the
resolved config and the command-line overrides, a results table, the exported refiner as a
model artifact, and G/D learning rates under their own names.

W&B itself stays optional: every function here does nothing for loggers that are not W&B.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf


def is_wandb(logger) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def hydra_job() -> tuple[list[str], int | None]:
    """(command-line overrides, multirun job number or None) of the running Hydra job; ([], None) outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], None
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    return overrides, (int(hc.job.num) if multirun else None)


def instantiate_loggers(cfg: DictConfig) -> list:
    """Build ``cfg.logger``. A W&B logger in a multirun job gets the job number appended to its
    name (``<name>-<num>``) so the jobs of one sweep stay apart; each job gets its own run because
    ``finish_loggers`` closes the previous one (Lightning would otherwise reuse the run in progress)."""
    _, job_num = hydra_job()
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        if conf is None:
            continue
        extra = {}
        if job_num is not None and str(conf.get("_target_", "")).endswith("WandbLogger") and conf.get("name"):
            extra["name"] = f"{conf.name}-{job_num}"
        loggers.append(instantiate(conf, **extra))
    return loggers


def log_config(loggers: Iterable, cfg: DictConfig) -> None:
    """Log the resolved config plus the Hydra command-line overrides (key ``overrides``) to every logger."""
    params = OmegaConf.to_container(cfg, resolve=True)
    params["overrides"] = hydra_job()[0]
    for logger in loggers:
        logger.log_hyperparams(params)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def log_results_table(loggers: Iterable, name: str, rows: Mapping[str, Mapping[str, float]]) -> None:
    """Log ``rows`` (row label → metric → value) as a ``wandb.Table`` under ``name`` to every W&B logger.

    Columns are ``output`` followed by the union of metric names in first-seen order; a metric a
    row lacks is left empty (None).
    """
    loggers = [lg for lg in loggers if is_wandb(lg)]
    if not loggers or not rows or not _is_rank_zero():
        return
    columns: list[str] = []
    for metrics in rows.values():
        columns += [k for k in metrics if k not in columns]
    data = [[label, *[(float(m[c]) if c in m else None) for c in columns]] for label, m in rows.items()]
    for logger in loggers:
        logger.log_table(key=name, columns=["output", *columns], data=data)


def validation_rows(metrics: Mapping[str, float], baselines: Iterable[str]) -> dict[str, dict[str, float]]:
    """``val/<baseline>/<metric>`` entries → {baseline: {metric: value}} (the input / paste-back / refiner table)."""
    rows: dict[str, dict[str, float]] = {}
    for b in baselines:
        prefix = f"val/{b}/"
        row = {k[len(prefix):]: float(v) for k, v in metrics.items() if k.startswith(prefix)}
        if row:
            rows[b.replace("_", "-")] = row
    return rows


def log_model_artifact(loggers: Iterable, directory: str | Path, name: str | None = None,
                       metadata: Mapping | None = None, aliases: Iterable[str] = ("latest",)) -> list:
    """Log an exported refiner folder (``config.json`` + ``model.safetensors``) as a W&B ``model``
    artifact to every W&B logger, named ``name`` or, like Lightning's ``log_model``, ``refiner-<run id>``;
    returns the artifacts (an offline run keeps them for ``wandb sync``)."""
    import wandb

    loggers = [lg for lg in loggers if is_wandb(lg)]
    if not loggers or not _is_rank_zero():
        return []
    artifacts = []
    for logger in loggers:
        run = logger.experiment
        artifact = wandb.Artifact(name=name or f"refiner-{run.id}", type="model", metadata=dict(metadata or {}))
        artifact.add_dir(str(directory))
        run.log_artifact(artifact, aliases=list(aliases))
        artifacts.append(artifact)
    return artifacts


def finish_loggers(loggers: Iterable, exit_code: int = 0) -> None:
    """Close each W&B run so that the next job of a multirun starts its own (``wandb.finish``)."""
    for logger in loggers:
        if is_wandb(logger) and getattr(logger, "_experiment", None) is not None:
            logger._experiment.finish(exit_code=exit_code)
            logger._experiment = None


class NamedLearningRateMonitor(LearningRateMonitor):
    """``LearningRateMonitor`` that names optimizers without a scheduler by role (``lr-G``, ``lr-D``)
    instead of by class (``lr-Adam``, ``lr-Adam-1``). ``names[i]`` is the i-th optimizer's name."""

    def __init__(self, names: Iterable[str] = ("G", "D"), **kwargs):
        super().__init__(**kwargs)
        self.names = list(names)

    def _find_names_from_optimizers(self, optimizers, seen_optimizers, seen_optimizer_types):
        hparam_keys, without_scheduler = super()._find_names_from_optimizers(
            optimizers, seen_optimizers, seen_optimizer_types)
        all_opts = [o.optimizer if hasattr(o, "optimizer") else o for o in optimizers]
        renamed = []
        for opt, keys in zip(without_scheduler, hparam_keys):
            i = next(j for j, o in enumerate(all_opts) if o is opt)
            if i >= len(self.names):
                renamed.append(keys)
                continue
            base = f"lr-{self.names[i]}"
            renamed.append([base if len(keys) == 1 else f"{base}/pg{k + 1}" for k in range(len(keys))])
        return renamed, without_scheduler
