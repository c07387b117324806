"""Train a PixPerfect refiner.

    python train.py experiment=pixperfect_flux data.train_shards='/data/train-{000000..000999}.tar'
    python train.py experiment=demo            # CPU, embedded data (what `make demo` runs)
    python train.py debug=fast                  # one batch through everything
    python train.py experiment=demo --cfg job   # print the composed config
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("PIXPERFECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


def final_evaluation_hook(cfg: DictConfig):
    """``cfg.final_evaluation`` as a ``train(after_export=…)`` hook: scores the exported refiner and
    logs the table to the run's loggers (W&B: ``results/final_evaluation``) before they close."""
    if not cfg.get("final_evaluation"):
        return None

    def run(loggers, export_dir: str) -> dict[str, float]:
        from evaluation.after_training import final_evaluation
        from evaluation.report import flat_row  # an interval (low, high): two columns
        from pixperfect.training.tracking import log_results_table

        results = final_evaluation(cfg, export_dir, Path(cfg.paths.output_dir) / "final_evaluation")
        rows = {row: {k: v for k, v in flat_row(vals).items() if isinstance(v, float)}
                for row, vals in results["methods"].items()}
        log_results_table(loggers, "results/final_evaluation", rows)
        return {f"final/{row}/{k}": v for row, vals in rows.items() for k, v in vals.items()}

    return run


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns ``cfg.optimized_metric`` of the final validation, the value a Hydra sweeper
    (``hparams_search=optuna``) optimises; None when no validation ran."""
    from data.errors import data_error_message
    from pixperfect.training.run import train

    fe = cfg.get("final_evaluation")
    if fe and not Path(str(fe.set)).exists() and not (fe.get("make_set") or {}).get("src"):
        # checked before hours of training, not after
        print("error: final_evaluation.make_set.src is not set and final_evaluation.set does not exist: pass a "
              "folder of photos the refiner is not trained on, e.g. final_evaluation.make_set.src=/data/heldout",
              file=sys.stderr)
        raise SystemExit(2)
    limit = (fe.get("make_set") or {}).get("limit") if fe and not Path(str(fe.set)).exists() else None
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        print(f"error: final_evaluation.make_set.limit must be a whole number of photos ≥ 1 (or null for all); "
              f"got {limit!r}", file=sys.stderr)
        raise SystemExit(2)
    try:
        metrics = train(cfg, after_export=final_evaluation_hook(cfg))
    except Exception as exc:  # bad data or data settings: one line and exit 2, no traceback
        message = data_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    key = cfg.get("optimized_metric")
    return float(metrics[key]) if key and key in metrics else None


if __name__ == "__main__":
    main()
