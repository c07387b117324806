"""How fast can a refiner variant learn the simulated artifacts? Pure-L1 training on the demo
data, printing the held-out masked-L1 ratio (refiner / input) every ``--every`` steps.

    python -m evaluation.learnability --steps 200 model.refiner.output=residual model.refiner.boundary_stats=false
    python -m evaluation.learnability --overfit --steps 100 --beta1 0.0 --beta2 0.99   # StyleGAN's Adam

Used to choose the refiner's head and global code (README, "The refiner"). No GAN, no EMA:
it isolates what the architecture can pick up per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.learnability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--mask-weight", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beta1", type=float, default=0.9, help="Adam β1 (StyleGAN uses 0)")
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam β2")
    parser.add_argument("--overfit", action="store_true",
                        help="train on one fixed batch and report its own ratio (can the optimiser fit at all?)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides on top of experiment=demo")
    args = parser.parse_args(argv)

    import os

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from pixperfect.metrics import masked_l1

    os.environ.setdefault("PIXPERFECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=demo", "data.num_workers=0", *args.overrides])
    torch.manual_seed(args.seed)
    datamodule = instantiate(cfg.data, simulation=instantiate(cfg.simulation))
    datamodule.setup("fit")
    val = datamodule.val_set.samples
    vx, vg, vm = (torch.stack([v[k] for v in val]) for k in ("x_gen", "x_gt", "mask"))
    refiner = instantiate(cfg.model.refiner)
    opt = torch.optim.Adam(refiner.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))
    if args.overfit:  # the one fixed batch is both what we train on and what we measure
        fixed = next(iter(datamodule.train_dataloader()))
        vx, vg, vm = fixed["x_gen"], fixed["x_gt"], fixed["mask"]
    base = masked_l1(vx, vg, vm).mean().item()
    step, t0 = 0, time.time()
    while step < args.steps:
        for batch in ([fixed] * args.steps if args.overfit else datamodule.train_dataloader()):
            x_pred = refiner(batch["x_gen"], batch["mask"])
            loss = 64 * ((x_pred - batch["x_gt"]).abs() * (1 + args.mask_weight * batch["mask"])).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(refiner.parameters(), 1.0)
            opt.step()
            step += 1
            if step % args.every == 0 or step == args.steps:
                with torch.no_grad():
                    ratio = masked_l1(refiner(vx, vm), vg, vm).mean().item() / base
                print(json.dumps({"step": step, "masked_l1_ratio": round(ratio, 4),
                                  "measured_on": "the fixed training batch" if args.overfit else "held-out val set",
                                  "seconds": round(time.time() - t0, 1), "overrides": args.overrides}), flush=True)
            if step >= args.steps:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
