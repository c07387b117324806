"""Per-family learning curves: which artifact families does a refiner variant learn, and by when?

    python -m evaluation.learnability --set SET [--set SET2 ...] --at 0,200,400,800 --name demo [train overrides ...]
    python -m evaluation.learnability --plot runs/*.jsonl --png docs/learning_curves.png

Trains with the real training step (``train.py``'s config; ``experiment=demo`` unless an override
names another) and, at each step in ``--at``, scores the EMA refiner (``region="edit"``, as users
run it) on each ``SET`` — sets made by ``evaluation.make_set``. It prints, per set and artifact
family, the refiner's masked L1 divided by the input's (< 1: the family is being learned; > 1: the
refiner harms it) and appends one JSON line per measurement to ``--out``. ``--plot`` draws the
curves of one or more such files.

Several sets in one run separate the reasons a refiner does not improve on a benchmark: the
training simulation on the *training* photos (memory), the same simulation on *held-out* photos
(generalisation to new content), and a ``benchmark`` set (artifact code training never ran).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]


def set_label(path: str) -> str:
    """A set's name in tables and plots: its folder's name."""
    return Path(str(path).rstrip("/")).name or str(path)


class BenchmarkCurve(L.Callback):
    """Scores the EMA refiner on one or more evaluation sets at given training steps; stops after the last.

    ``records``: one set's records, or ``{label: records}`` for several; ``set``: a set's folder,
    or a list of folders (the callback form from the command line). ``head``: also record what the
    head adds to the prior (``evaluation.head_activity`` over the whole set: the largest |Δ| in 8-bit
    steps, the share of 8-bit values Δ changes, the gain and its spread between images), so a curve
    shows when the head starts to act; one more forward per sample.
    """

    def __init__(self, records=None, at_steps: list[int] = (0,), name: str = "run", out: str | None = None,
                 batch_size: int = 8, set=None, limit: int | None = None, stop: bool = True, head: bool = False):
        if records is None:  # added to any training run from the command line:
            # +callbacks.benchmark_curve._target_=evaluation.learnability.BenchmarkCurve +callbacks.benchmark_curve.set=SET
            from evaluation.sets import EvalInputError, load_set

            if set is None:
                raise ValueError("BenchmarkCurve needs records or set (an evaluation set's folder, or a list of them)")
            folders = [set] if isinstance(set, (str, os.PathLike)) else list(set)
            labels = [set_label(f) for f in folders]
            if len(labels) != len(dict.fromkeys(labels)):
                raise ValueError(f"two sets have the same folder name ({', '.join(labels)}); the tables could not "
                                 "tell them apart: rename one folder")
            records = {}
            for label, folder in zip(labels, folders):
                if not Path(str(folder)).exists():
                    raise EvalInputError(f"evaluation set {folder} does not exist: make it with python -m "
                                         "evaluation.make_set (docs/learning_diagnostics.md, 'Why training does "
                                         "not move past the prior', has the commands for the learning-curve sets)")
                records[label] = load_set(str(folder), limit)
        self.stop = stop
        self.sets = dict(records) if isinstance(records, dict) else {"": records}
        self.at = sorted({int(s) for s in at_steps})
        self.name = name
        self.out = Path(out) if out else None
        self.batch_size = batch_size
        self.head = bool(head)
        self.rows: list[dict] = []
        self.t0 = time.time()

    def _measure(self, pl_module, step: int) -> None:
        from evaluation.evaluate import evaluate, refiner_method
        from pixperfect.inference import Refiner

        refiner = Refiner(pl_module.ema.module)
        methods = {"input": lambda g, m, o, i: g, "refiner": refiner_method(refiner, 1, "edit", 0)}
        for label, records in self.sets.items():
            with torch.no_grad():
                results, _ = evaluate(records, methods, self.batch_size, progress=False)
            row = {"name": self.name, "set": label, "step": step, "seconds": round(time.time() - self.t0, 1),
                   "overall": results["methods"]["refiner"]["masked_l1_ratio"],
                   "bg_mse": results["methods"]["refiner"]["bg_mse"],
                   "families": {f: v["refiner"]["masked_l1_ratio"] if v["refiner"]["masked_l1_ratio"] is not None
                                else v["refiner"]["masked_l1"] for f, v in results["families"].items()}}
            if self.head:
                from evaluation.head_activity import head_activity

                every = head_activity(pl_module.ema.module, records, self.batch_size)["all"]
                row["head"] = {k: every[k] for k in ("max_delta", "flipped", "gain", "gain_sd")}
            self.rows.append(row)
            print(json.dumps(row), flush=True)
            if self.out is not None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                with open(self.out, "a") as f:
                    f.write(json.dumps(row) + "\n")

    def on_train_start(self, trainer, pl_module):
        if self.head and not callable(getattr(pl_module.ema.module, "forward_parts", None)):  # before any step is spent
            raise ValueError(f"BenchmarkCurve(head=True) needs a refiner with forward_parts (CMGANRefiner); "
                             f"got {type(pl_module.ema.module).__name__}")
        self.t0 = time.time()
        if 0 in self.at:
            self._measure(pl_module, 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = int(pl_module.step_count)
        if step in self.at and step > 0:
            self._measure(pl_module, step)
        if self.stop and step >= self.at[-1]:
            trainer.should_stop = True
            # a stop Lightning would hold back until min_epochs (1 by default) ends: with one long
            # epoch (experiment=learn_gpu) that is thousands of steps past the curve's last one
            trainer.fit_loop.min_epochs = 0


def table(rows: list[dict]) -> str:
    """Markdown: one row per (set, step), the overall ratio and one column per family; a family a
    set does not have is ``–``. Rows are grouped by set, so a set's curve reads top to bottom."""
    fams = sorted({f for r in rows for f in r["families"]} - {"boundary.feathered", "boundary.hard"})
    labels = list(dict.fromkeys(r.get("set", "") for r in rows))
    head = any("head" in r for r in rows)  # --head: the head's largest |Δ| (8-bit steps) and the gain
    extra = ["max \\|Δ\\|", "8-bit values Δ changes", "gain"] if head else []
    lines = ["| variant | set | step | overall | " + " | ".join(fams + extra) + " |",
             "|---|---|---:|---:|" + "---:|" * (len(fams) + len(extra))]
    for label in labels:
        for r in (r for r in rows if r.get("set", "") == label):
            cells = [f"{r['families'][f]:.3f}" if f in r["families"] else "–" for f in fams]
            if head:
                h = r.get("head") or {}
                cells += ["–" if h.get("max_delta") is None else f"{h['max_delta']:.3f}",
                          "–" if h.get("flipped") is None else f"{h['flipped']:.5f}",
                          "–" if h.get("gain") is None else f"{h['gain']:.3f} ± {h['gain_sd']:.3f}"]
            overall = "–" if r["overall"] is None else f"{r['overall']:.3f}"  # None: the set has no error (clean)
            lines.append(f"| {r['name']} | {label or '–'} | {r['step']} | {overall} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(files: list[str], png: str) -> None:
    """One panel per (variant, set): masked-L1 ratio against step, one line per family (clean left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for f in files for line in Path(f).read_text().splitlines() if line.strip()]
    panels = list(dict.fromkeys((r["name"], r.get("set", "")) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, sharey=True)
    for ax, (name, label) in zip(axes[0], panels):
        rs = sorted((r for r in rows if r["name"] == name and r.get("set", "") == label), key=lambda r: r["step"])
        steps = [r["step"] for r in rs]
        fams = sorted({f for r in rs for f in r["families"]} - {"boundary.feathered", "boundary.hard", "clean"})
        for fam in fams:
            ax.plot(steps, [r["families"].get(fam) for r in rs], marker="o", ms=3, label=fam)
        ax.plot(steps, [r["overall"] for r in rs], "k-", lw=2.5, label="overall")
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_title(f"{name} on {label}" if label else name)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper right")  # per panel: sets made by different recipes name their families differently
    axes[0][0].set_ylabel("masked L1 / input's")
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.learnability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[],
                        help="evaluation set (folder of shards or triples; evaluation.make_set); repeat for several")
    parser.add_argument("--at", default="0,100,200,400", help="comma-separated training steps to measure at")
    parser.add_argument("--name", default="variant", help="variant name in the table and plot")
    parser.add_argument("--out", default=None, help="append JSON lines here")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples of each set")
    parser.add_argument("--plot", nargs="+", default=None, help="JSON-lines files to plot instead of training")
    parser.add_argument("--png", default="learning_curves.png", help="where --plot writes")
    parser.add_argument("--head", action="store_true",
                        help="also record the head's largest correction and the gain at each step (head_activity)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of train.py (experiment=demo by default)")
    args = parser.parse_args(argv)
    if args.plot:
        plot(args.plot, args.png)
        print(f"wrote {args.png}")
        return 0
    if not args.set:
        print("error: --set is required (make one with python -m evaluation.make_set)", file=sys.stderr)
        return 2
    try:
        at = [int(s) for s in args.at.split(",")]
    except ValueError:
        print(f"error: --at must be comma-separated integers; got {args.at!r}", file=sys.stderr)
        return 2
    from hydra import compose, initialize_config_dir

    from pixperfect.training.run import build

    try:  # the sets are read and checked before anything is built or trained
        curve = BenchmarkCurve(at_steps=at, name=args.name, out=args.out, set=args.set, limit=args.limit, head=args.head)
    except ValueError as exc:  # EvalInputError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("PIXPERFECT_ROOT", str(ROOT))
    overrides = list(args.overrides)
    if not any(o.startswith("experiment=") for o in overrides):
        overrides.insert(0, "experiment=demo")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            *overrides, "~callbacks", "~logger", "evaluate=false", "final_evaluation=null",
            "trainer.max_epochs=100000", "trainer.min_epochs=0", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
            "trainer.check_val_every_n_epoch=100000", "paths.output_dir=" + str(Path(args.out or ".").parent)])
    datamodule, module, trainer = build(cfg)
    trainer.callbacks.append(curve)
    trainer.fit(module, datamodule=datamodule)
    print()
    print(table(curve.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
