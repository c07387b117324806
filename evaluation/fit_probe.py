"""Can a refiner variant fit at all, and how fast? The L1 term alone, no GAN, no EMA.

    python -m evaluation.fit_probe --steps 200 model.refiner.seam_prior=false model.refiner.output=residual model.refiner.boundary_stats=false
    python -m evaluation.fit_probe --overfit --steps 100 --beta1 0.0 --beta2 0.99

Trains the refiner of ``train.py``'s config (``experiment=demo`` unless an override names another)
with only its pixel-space L1 term (``loss.l1`` with its mask, keep and low-pass weights, ``l1_weight``
of the pixel space), plus the seam-scale term where ``loss.seam_scale.weight`` > 0, and prints, every ``--every`` steps, the refiner's masked L1 divided by the input's on the
validation set of the data config (held-out photos, the training simulation), or on ``--set`` (one
yardstick for runs whose simulations differ). With ``--overfit`` it
trains on one fixed batch and measures that batch: whether the architecture and optimiser can fit
at all, separately from whether what they fit transfers (``evaluation.learnability`` measures that,
with the whole training step, on sets the training never made).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def family_ratios(refined_l1: torch.Tensor, input_l1: torch.Tensor, families: list[list[str]]) -> dict[str, float]:
    """Per family label: the family's summed masked L1 of the refiner over the input's (a sample counts
    in every family it carries); a family whose input error is 0 (``clean``) is left out."""
    out = {}
    for name in sorted({f for fams in families for f in fams}):
        idx = torch.tensor([i for i, fams in enumerate(families) if name in fams])
        denominator = input_l1[idx].sum().item()
        if denominator > 0:
            out[name] = round(refined_l1[idx].sum().item() / denominator, 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.fit_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beta1", type=float, default=0.9, help="Adam β1 (StyleGAN uses 0)")
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam β2")
    parser.add_argument("--overfit", action="store_true",
                        help="train on one fixed batch and report its own ratio (can the optimiser fit at all?)")
    parser.add_argument("--set", default=None,
                        help="measure on this evaluation set (evaluation.make_set; one image size) instead of the "
                             "config's validation set: the same yardstick for runs whose simulations differ")
    parser.add_argument("--gate-weight", type=float, default=0.0,
                        help="with model.refiner.cast_gate=true: weight of the gate's binary cross-entropy against "
                             "the simulation's label 'this edit has a colour cast' (0: the gate learns from L1 alone)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of train.py (experiment=demo by default)")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides
    if args.steps < 1 or args.every < 1:
        print(f"error: --steps and --every must be ≥ 1; got {args.steps}, {args.every}", file=sys.stderr)
        return 2
    if not args.lr > 0 or not (0.0 <= args.beta1 < 1.0 and 0.0 <= args.beta2 < 1.0):
        print(f"error: --lr must be > 0 and --beta1/--beta2 in [0, 1); got {args.lr}, {args.beta1}, {args.beta2}",
              file=sys.stderr)
        return 2
    if args.overfit and args.set:
        print("error: --overfit measures the fixed batch; --set cannot be used with it", file=sys.stderr)
        return 2

    measure, families = None, None
    if args.set:  # checked before any model or data is built
        from evaluation.sets import EvalInputError, families_of, load_set

        try:
            records = load_set(args.set)
            decoded = [r.decode() for r in records]
            families = [families_of(r) for r in records]
        except EvalInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if len({d["x_gen"].shape for d in decoded}) != 1:
            print(f"error: --set {args.set} mixes image sizes; the probe stacks it as one batch", file=sys.stderr)
            return 2
        measure = {k: torch.stack([d[k] for d in decoded]) for k in ("x_gen", "x_gt", "mask")}

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from pixperfect.metrics import masked_l1

    os.environ.setdefault("PIXPERFECT_ROOT", str(ROOT))
    overrides = list(args.overrides)
    if not any(o.startswith("experiment=") for o in overrides):
        overrides.insert(0, "experiment=demo")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, "data.num_workers=0"])
    torch.manual_seed(args.seed)
    datamodule = instantiate(cfg.data, simulation=instantiate(cfg.simulation))
    datamodule.setup("fit")
    refiner = instantiate(cfg.model.refiner)
    l1 = instantiate(cfg.loss.l1)
    l1_weight = float(cfg.loss.spaces.pixel.l1_weight)
    seam_scale = instantiate(cfg.loss.seam_scale) if cfg.loss.get("seam_scale") else None
    if seam_scale is not None and seam_scale.weight > 0 and not getattr(refiner, "seam_gain", False):
        print("error: loss.seam_scale.weight > 0 supervises the seam prior's scale; the refiner needs "
              "model.refiner.seam_prior=true and model.refiner.seam_gain=true", file=sys.stderr)
        return 2
    if seam_scale is not None and not seam_scale.weight > 0:
        seam_scale = None
    if args.gate_weight < 0:
        print(f"error: --gate-weight must be >= 0; got {args.gate_weight}", file=sys.stderr)
        return 2
    if args.gate_weight > 0 and getattr(refiner, "cast_gate", None) is None:
        print("error: --gate-weight supervises the cast gate; the refiner needs model.refiner.cast_gate=true",
              file=sys.stderr)
        return 2
    opt = torch.optim.Adam(refiner.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))
    if args.overfit:  # the one fixed batch is both what we train on and what we measure
        fixed = next(iter(datamodule.train_dataloader()))
        measure = {k: fixed[k] for k in ("x_gen", "x_gt", "mask")}
    elif measure is None:
        val = datamodule.val_set.samples
        measure = {k: torch.stack([v[k] for v in val]) for k in ("x_gen", "x_gt", "mask")}
    input_l1 = masked_l1(measure["x_gen"], measure["x_gt"], measure["mask"])
    base = input_l1.mean().item()
    if base <= 0:
        print("error: the measured samples are all clean (the input's masked L1 is 0), so no ratio can be formed; "
              "measure on a set with artifacts", file=sys.stderr)
        return 2

    def measured() -> dict:
        with torch.no_grad():
            parts = refiner.forward_parts(measure["x_gen"], measure["mask"])
        per_sample = masked_l1(parts.image, measure["x_gt"], measure["mask"])
        out = {"masked_l1_ratio": round(per_sample.mean().item() / base, 4)}
        if families is not None:  # the same ratio within each family of the set (clean ones have no ratio)
            out["families"] = family_ratios(per_sample, input_l1, families)
        if parts.gate_logit is not None:  # the cast gate's mean opening, over all and per family
            gate = torch.sigmoid(parts.gate_logit.flatten())
            out["gate"] = round(gate.mean().item(), 4)
            if families is not None:
                out["gate_families"] = {name: round(gate[[i for i, f in enumerate(families) if name in f]].mean().item(), 4)
                                        for name in sorted({f for fams in families for f in fams})}
        if parts.scale is not None:  # the seam prior's scale over the edits (1 = untrained)
            m = measure["mask"]
            per_image = (parts.scale * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1)
            out["seam_scale"] = round(((parts.scale * m).sum() / m.sum().clamp_min(1)).item(), 4)
            # spread over images of their mean scale: 0 = one scale for every image
            out["seam_scale_std"] = round(per_image.std().item(), 4) if len(per_image) > 1 else 0.0
        return out

    def report(step: int) -> None:
        print(json.dumps({"step": step, **measured(),
                          "measured_on": "the fixed training batch" if args.overfit else args.set or "held-out val set",
                          "seconds": round(time.time() - t0, 1), "overrides": args.overrides}), flush=True)

    step, t0 = 0, time.time()
    report(0)  # the untrained refiner: the identity, or the seam prior with seam_prior=true
    while step < args.steps:
        for batch in (iter(lambda: fixed, None) if args.overfit else datamodule.train_dataloader()):
            parts = refiner.forward_parts(batch["x_gen"], batch["mask"])
            loss = l1_weight * l1(parts.image, batch["x_gt"], batch["mask"], batch["x_gen"], batch["x_gt"])[0]
            if seam_scale is not None:
                loss = loss + seam_scale(parts.scale, parts.offset, batch["x_gen"], batch["x_gt"], batch["mask"],
                                         parts.delta)[0]
            if args.gate_weight > 0:
                loss = loss + args.gate_weight * torch.nn.functional.binary_cross_entropy_with_logits(
                    parts.gate_logit.flatten(), batch["cast"].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(refiner.parameters(), float(cfg.module.grad_clip or 0) or float("inf"))
            opt.step()
            step += 1
            if step % args.every == 0 or step == args.steps:
                report(step)
            if step >= args.steps:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
