"""Export the EMA refiner from a training checkpoint as ``config.json`` + ``model.safetensors``.

    python -m pixperfect.export CKPT OUT_DIR

Needs neither Lightning nor Hydra: the checkpoint carries the refiner's class and config.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch
from torch import nn

EMA_PREFIX = "ema.module."


def refiner_from_checkpoint(ckpt_path: str | Path) -> nn.Module:
    """Rebuild the refiner with the checkpoint's EMA weights."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    meta = ckpt.get("pixperfect")
    if meta is None or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a PixPerfect training checkpoint (no 'pixperfect' metadata)")
    module_name, _, cls_name = meta["refiner_class"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    refiner = cls(**{k: v for k, v in meta["refiner_config"].items() if not k.startswith("_")})
    state = {k[len(EMA_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(EMA_PREFIX)}
    if not state:
        raise ValueError(f"{path} holds no EMA weights (keys starting with {EMA_PREFIX!r})")
    refiner.load_state_dict(state, strict=True)
    return refiner.eval()


def export_refiner(refiner: nn.Module, out_dir: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (what ``Refiner.from_pretrained`` reads)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refiner.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixperfect.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt) of a PixPerfect run")
    parser.add_argument("out_dir", help="folder to write config.json + model.safetensors to")
    args = parser.parse_args(argv)
    try:
        out = export_refiner(refiner_from_checkpoint(args.checkpoint), args.out_dir)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported EMA refiner to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
