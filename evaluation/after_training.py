"""Score a freshly exported refiner on a set its training never made (``final_evaluation`` in the
train config): build the set with ``evaluation.make_set`` if it is missing, then run
``evaluation.evaluate`` on it. Called by ``train.py`` after export — training validation only
measures the training simulation itself; this is the number that says whether the refiner generalises.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from evaluation.evaluate import run as evaluate_run
from evaluation.make_set import make_set


def demo_photos(folder: str | Path) -> Path:
    """Write the demo's held-out scikit-image photos (never trained on) as full-size PNGs; return the folder."""
    from data.demo import write_demo_photos

    write_demo_photos(folder, "val", as_stored=False)
    return Path(folder)


def final_evaluation(cfg: DictConfig, export_dir: str | Path, out_dir: str | Path) -> dict:
    """Run the configured evaluation of ``export_dir``; returns evaluate's results dict."""
    fe = cfg.final_evaluation
    set_dir = Path(str(fe.set))
    if not set_dir.exists():
        ms = fe.make_set
        if not ms.get("src"):
            raise ValueError("final_evaluation.make_set.src is not set: pass a folder of photos the refiner was "
                             "not trained on, e.g. final_evaluation.make_set.src=/data/photos_heldout")
        src = demo_photos(ms.src) if ms.get("demo_photos") else Path(str(ms.src))
        autoencoder = ms.get("autoencoder")
        if autoencoder and not Path(str(autoencoder)).exists():
            print(f"final_evaluation: autoencoder {autoencoder} not found; its families are left out")
            autoencoder = None
        make_set(src, set_dir, ms.recipe, ms.size, ms.seed, ms.get("per_image", 1), autoencoder, limit=ms.get("limit"))
    eval_cfg = OmegaConf.create({
        "set": str(set_dir), "refiners": {cfg.task_name: str(export_dir)}, "pool": fe.get("pool"),
        "regions": list(fe.get("regions", ["edit"])), "baselines": list(fe.get("baselines", ["input", "paste_back", "poisson"])),
        "out_dir": str(out_dir), "batch_size": fe.get("batch_size", 8), "device": "cpu", "limit": None, "seed": 0,
        "output_bits": fe.get("output_bits"), "original": bool(fe.get("original", False)),
        "metrics": {"lpips_net": fe.get("lpips_net", "alex"), "fid": fe.get("fid", True), "kid_subset_size": 50,
                    "clip_model": None},
        "contact_sheet_rows": 8, "logger": None, "wandb": {"project": "pixperfect", "group": None, "name": None}})
    print(f"\nfinal evaluation on {set_dir} (photos and artifacts training never made):\n")
    return evaluate_run(eval_cfg)
