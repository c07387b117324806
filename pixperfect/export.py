"""Export the EMA refiner of a training checkpoint as a hub-style model folder.

    python -m pixperfect.export CKPT OUT_DIR [--results evaluate.md|evaluate.json]

Writes ``config.json`` + ``model.safetensors`` (what ``Refiner.from_pretrained`` reads) and a
``README.md`` model card: architecture and size, how it was trained (experiment, data, steps,
simulation families — from the run's Hydra config beside the checkpoint), the validation table,
the ``evaluate`` table when given, intended use and limits, and the licence. Needs neither
Lightning nor Hydra: the checkpoint carries the refiner's class and config.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

EMA_PREFIX = "ema.module."
LICENSE = "apache-2.0"  # the project's licence (pyproject.toml); the weights are released under it too
SIMULATION_FAMILIES = ("color_shift", "texture", "content_band", "boundary", "global_drift", "clean")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def load_checkpoint(ckpt_path: str | Path) -> dict:
    """The checkpoint dict; a clear ValueError/FileNotFoundError for anything that is not one."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load raises RuntimeError, UnpicklingError, EOFError, … on non-checkpoints
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint ({_first_line(exc)}); "
                         "expected a Lightning .ckpt of a PixPerfect run (is it truncated?)") from None
    if not isinstance(ckpt, dict) or ckpt.get("pixperfect") is None or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a PixPerfect training checkpoint (no 'pixperfect' metadata)")
    return ckpt


def refiner_from_checkpoint(ckpt_path: str | Path, ckpt: dict | None = None) -> nn.Module:
    """Rebuild the refiner with the checkpoint's EMA weights."""
    path = Path(ckpt_path)
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    meta = ckpt["pixperfect"]
    module_name, _, cls_name = meta["refiner_class"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    config = {k: v for k, v in meta["refiner_config"].items() if not k.startswith("_")}
    if hasattr(cls, "upgrade_config"):  # a checkpoint from before an option existed keeps its behaviour
        config = cls.upgrade_config(config)
    refiner = cls(**config)
    state = {k[len(EMA_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(EMA_PREFIX)}
    if not state:
        raise ValueError(f"{path} holds no EMA weights (keys starting with {EMA_PREFIX!r})")
    refiner.load_state_dict(state, strict=True)
    return refiner.eval()


# ------------------------------------------------------------------------------ model card
def run_config(ckpt_path: str | Path) -> tuple[dict, dict]:
    """(resolved-if-possible Hydra config, Hydra's group choices) of the run a checkpoint belongs to.

    Hydra writes ``<run>/.hydra/{config,hydra}.yaml``; checkpoints live in ``<run>/checkpoints/``.
    Empty dicts when the checkpoint was moved away from its run folder.
    """
    from omegaconf import OmegaConf

    for run_dir in list(Path(ckpt_path).resolve().parents)[:3]:
        hydra_dir = run_dir / ".hydra"
        if (hydra_dir / "config.yaml").is_file():
            cfg = OmegaConf.load(hydra_dir / "config.yaml")
            try:
                config = OmegaConf.to_container(cfg, resolve=True)
            except Exception:  # hydra:/now: resolvers are not registered outside a Hydra run
                config = OmegaConf.to_container(cfg, resolve=False)
            choices = {}
            if (hydra_dir / "hydra.yaml").is_file():
                choices = OmegaConf.to_container(OmegaConf.load(hydra_dir / "hydra.yaml"), resolve=False)
                choices = choices.get("hydra", {}).get("runtime", {}).get("choices", {}) or {}
            return config, choices
    return {}, {}


def training_summary(config: Mapping | None = None, choices: Mapping | None = None, step: int | None = None,
                     epoch: int | None = None) -> dict:
    """The facts a model card states about training, from a (Hydra) run config."""
    config = dict(config or {})
    choices = dict(choices or {})
    data = config.get("data") or {}
    sim = config.get("simulation") or {}
    trainer = config.get("trainer") or {}
    families = []
    for name in SIMULATION_FAMILIES:
        fam = sim.get(name) if isinstance(sim, Mapping) else None
        if isinstance(fam, Mapping):
            families.append(f"{name} (p={fam['p']})" if "p" in fam else name)
    summary = {
        "experiment": choices.get("experiment") or config.get("task_name"),
        "model config": choices.get("model"),
        "loss": choices.get("loss"),
        "data": choices.get("data"),
        "train shards": data.get("train_shards") if isinstance(data, Mapping) else None,
        "resolution": data.get("resolution") if isinstance(data, Mapping) else None,
        "batch size": data.get("batch_size") if isinstance(data, Mapping) else None,
        "simulation": choices.get("simulation"),
        "simulation families": ", ".join(families) or None,
        "training steps (batches)": step,
        "epochs": epoch,
        "max epochs": trainer.get("max_epochs") if isinstance(trainer, Mapping) else None,
        "seed": config.get("seed"),
    }
    return {k: v for k, v in summary.items() if v not in (None, "", [])}


def live_training_summary(cfg, step: int | None = None, epoch: int | None = None) -> dict:
    """``training_summary`` inside a running Hydra job (the config object and Hydra's group choices)."""
    from omegaconf import OmegaConf

    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        config = OmegaConf.to_container(cfg, resolve=False)
    choices = {}
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            choices = dict(HydraConfig.get().runtime.choices)
    except Exception:  # no Hydra run (tests compose configs directly)
        pass
    return training_summary(config, choices, step, epoch)


def metrics_table(metrics: Mapping[str, float]) -> str:
    """``val/<output>/<metric>`` numbers → a markdown table, one row per output (input, paste-back, refiner…)."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and isinstance(value, (int, float)):
            rows.setdefault(parts[1], {})[parts[2]] = float(value)
    if not rows:
        return ""
    cols = sorted({c for r in rows.values() for c in r})
    lines = ["| output | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, r in rows.items():
        lines.append(f"| {name.replace('_', '-')} | " + " | ".join(f"{r[c]:.4f}" if c in r else "" for c in cols) + " |")
    return "\n".join(lines)


def results_markdown(results: Mapping | str | None) -> str:
    """An ``evaluate`` result: markdown as it is, or a dict (rows → columns, or flat) as a table."""
    if results is None:
        return ""
    if isinstance(results, str):
        return results.strip()
    if all(isinstance(v, Mapping) for v in results.values()):
        cols = list(dict.fromkeys(c for r in results.values() for c in r))
        lines = ["| | " + " | ".join(map(str, cols)) + " |", "|---|" + "---:|" * len(cols)]
        for name, r in results.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
        return "\n".join(lines)
    return "\n".join(["| metric | value |", "|---|---:|", *(f"| {k} | {_fmt(v)} |" for k, v in results.items())])


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def model_card(refiner: nn.Module, training: Mapping | None = None, validation: Mapping | None = None,
               evaluation: Mapping | str | None = None) -> str:
    """The ``README.md`` of an exported refiner (Hugging Face model-card layout, YAML front matter)."""
    n_params = sum(p.numel() for p in refiner.parameters())
    config = {k: v for k, v in dict(getattr(refiner, "config", {})).items() if not k.startswith("_")}
    lines = [
        "---", f"license: {LICENSE}", "library_name: pixperfect", "pipeline_tag: image-to-image",
        "tags:", "- image-refinement", "- inpainting", "- pixperfect", "---", "",
        f"# PixPerfect refiner ({type(refiner).__name__}, {n_params / 1e6:.2f}M parameters)", "",
        "Removes the low-level artifacts a latent-diffusion local edit leaves behind — colour shift, "
        "texture mismatch, seams and discontinuities at the mask boundary — by refining the edited image "
        "in pixel space, given the edit mask.", "",
        "```python", "from pixperfect import Refiner", "refiner = Refiner.from_pretrained(\"THIS_FOLDER\")",
        "refined = refiner(image, mask)  # PIL / numpy / torch; mask white = edited", "```", "",
        "## Architecture", "",
        f"`{type(refiner).__module__}.{type(refiner).__name__}`: {n_params:,} parameters. CM-GAN-style: "
        "encoder, Fast-Fourier-Convolution bottleneck, global code, cascaded global/spatial modulation "
        "decoder; fully convolutional (any H×W). Config (`config.json`):", "",
        "| key | value |", "|---|---|", *(f"| {k} | `{json.dumps(v)}` |" for k, v in config.items()), "",
    ]
    lines += ["## Training", ""]
    if training:
        lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in training.items()), ""]
    else:
        lines += ["Not recorded (exported without its run's config).", ""]
    table = metrics_table(validation or {})
    lines += ["## Validation", "", table or "Not recorded.", ""]
    if table:
        lines[-2:-1] = ["Held-out validation of the training run (simulated artifacts; EMA weights):", "", table]
    evaluated = results_markdown(evaluation)
    if evaluated:
        lines += ["## Evaluation (`python -m evaluation.evaluate`)", "", evaluated, ""]
    lines += [
        "## Intended use and limits", "",
        "- Use: post-processing of local edits made with latent-diffusion inpainting (Stable Diffusion, "
        "FLUX-Fill, PILOT, …): give it the edited image and the edit mask (white = edited).",
        "- `region=\"edit\"` (default) leaves every pixel farther than the feathered band around the mask "
        "unchanged; use `region=\"full\"` only for raw decoder outputs whose whole background drifted.",
        "- It fixes low-level artifacts only: colours, texture statistics and seams. It does not fix semantics "
        "(wrong objects, anatomy, text, lighting direction, perspective) and will not remove content.",
        "- Trained on simulated artifacts; quality on a new LDM's artifacts should be checked with "
        "`python -m evaluation.evaluate` before relying on it. Not for forensic or medical use.", "",
        "## Licence", "",
        f"Weights and code: {LICENSE} (the PixPerfect project's licence). The photos the model was trained on "
        "keep their own licences.", "",
    ]
    return "\n".join(lines)


EXPORT_FILES = ("config.json", "model.safetensors")  # what makes a folder an export (``from_pretrained`` reads them)
CARD = "README.md"


def _same_export(a: Path, b: Path) -> bool:
    """The same refiner: the same config (whatever diffusers version wrote it) and every tensor bit
    for bit; the card may differ (run dates, tables). Compared as content, not as file bytes:
    safetensors writes its metadata in hash-map order, which changes from one save to the next. An
    export that is incomplete or cannot be read is not the same."""
    from safetensors import SafetensorError, safe_open

    def config(folder: Path) -> dict:
        return {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if k != "_diffusers_version"}

    try:
        if config(a) != config(b):
            return False
        with safe_open(a / "model.safetensors", "pt") as fa, safe_open(b / "model.safetensors", "pt") as fb:
            if fa.metadata() != fb.metadata() or set(fa.keys()) != set(fb.keys()):
                return False
            return all(_bitwise_equal(fa.get_tensor(k), fb.get_tensor(k)) for k in fa.keys())
    except (OSError, ValueError, RuntimeError, SafetensorError):
        return False


def _bitwise_equal(x: torch.Tensor, y: torch.Tensor) -> bool:
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    return torch.equal(x.contiguous().view(-1).view(torch.uint8), y.contiguous().view(-1).view(torch.uint8))


def _set_aside(place: Path, names: list[str]) -> Path:
    """Keep the files ``names`` of ``place`` (an earlier export's config, weights, card) in a new
    folder ``<name>.replaced-<time>`` beside it, dated by its weights (now, without them); a number is
    appended if the name is taken. The files are first renamed into a hidden folder inside ``place``
    (the same filesystem: nothing is copied, nothing is half-moved), which is then renamed beside it;
    where that cannot be done (a parent that is not writable, another filesystem) the folder stays
    inside, as ``replaced-<time>``."""
    weights = place / "model.safetensors"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(weights.stat().st_mtime if weights.exists() else None))
    holding = Path(tempfile.mkdtemp(prefix=".replaced-", dir=place))
    for name in names:
        os.replace(place / name, holding / name)
    for base in (place.with_name(f"{place.name}.replaced-{stamp}"), place / f"replaced-{stamp}"):
        candidates = [base, *(base.with_name(f"{base.name}-{n}") for n in range(1, 1000))]
        target = next(c for c in candidates if not c.exists())
        try:
            os.rename(holding, target)
            return target
        except OSError:
            continue
    return holding  # (kept where it is: hidden, but nothing lost)


def export_refiner(refiner: nn.Module, out_dir: str | Path, training: Mapping | None = None,
                   validation: Mapping | None = None, evaluation: Mapping | str | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + the ``README.md`` model card.

    The files are written into a hidden folder inside ``out_dir`` first, then renamed into place, so
    an export that fails while writing (a full disk, a bad value) leaves the folder as it was.
    Nothing written before is lost: unless they are the same refiner (the same config and weights: a
    rerun of a deterministic recipe, whose files are simply rewritten), whatever of the three files is
    already in ``out_dir`` is moved to ``<name>.replaced-<time>`` beside it (printed; see
    ``_set_aside``); any other files stay where they are."""
    out = Path(out_dir)
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot export to {out}: {parent} is a file, not a folder")
            break
    place = out.resolve()  # ("." has no name to put a sibling beside)
    place.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".exporting-", dir=place))
    try:
        refiner.save_pretrained(staging)
        (staging / CARD).write_text(model_card(refiner, training, validation, evaluation), encoding="utf-8")
        present = [name for name in (*EXPORT_FILES, CARD) if (place / name).exists()]
        if present and not _same_export(place, staging):
            print(f"export: {out} held {', '.join(present)} of another refiner; kept in {_set_aside(place, present)}")
        for name in (*EXPORT_FILES, CARD):
            os.replace(staging / name, place / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, evaluation: Mapping | str | None = None) -> Path:
    """A training checkpoint → an exported folder whose card is filled from the checkpoint and its run."""
    ckpt = load_checkpoint(ckpt_path)
    refiner = refiner_from_checkpoint(ckpt_path, ckpt)
    config, choices = run_config(ckpt_path)
    step = ckpt["state_dict"].get("step_count")  # training batches (Lightning's global_step counts G and D steps)
    training = training_summary(config, choices, step=int(step) if step is not None else ckpt.get("global_step"),
                                epoch=ckpt.get("epoch"))
    validation = ckpt.get("pixperfect", {}).get("val_results") or {}
    return export_refiner(refiner, out_dir, training, validation, evaluation)


def read_results(path: str) -> Mapping | str:
    """``--results``: a markdown (.md / .txt) table kept verbatim, or JSON (a dict) rendered as one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--results {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--results {p} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"--results {p} must hold a JSON object (metric → value, or row → {{metric: value}})")
        return data
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixperfect.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt) of a PixPerfect run")
    parser.add_argument("out_dir", help="folder to write config.json + model.safetensors + README.md to")
    parser.add_argument("--results", help="an evaluate table for the model card (.md kept verbatim, or .json)")
    args = parser.parse_args(argv)
    try:
        results = read_results(args.results) if args.results else None
        out = export_checkpoint(args.checkpoint, args.out_dir, results)
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 2
    print(f"exported EMA refiner to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
