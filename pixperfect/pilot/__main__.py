"""Inpaint an image with PILOT.

    python -m pixperfect.pilot --model DIR_OR_HUB_ID --image in.png --mask mask.png --prompt "a red car" --out out.png

The mask is read as grayscale, white (> 0.5) = region to generate. Errors print one line and
exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixperfect.pilot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SD1.x/2.x pipeline folder or hub id")
    parser.add_argument("--image", required=True)
    parser.add_argument("--mask", required=True, help="white = region to generate")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument("--steps", type=int, default=200, help="num_inference_steps")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--gamma", type=float, default=1.0, help="share of the trajectory that is optimised")
    parser.add_argument("--op-interval", type=int, default=10)
    parser.add_argument("--gradient-steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.7)
    parser.add_argument("--coef", type=float, default=1.0)
    parser.add_argument("--no-sbc", action="store_true", help="turn Semantic Boundary Control off")
    parser.add_argument("--paste-back", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from pixperfect.pilot import PilotPipeline
    from pixperfect.refine import InputError, read_image

    try:
        image = read_image(args.image, "RGB")
        mask = read_image(args.mask, "L")
        if mask.shape[-2:] != image.shape[-2:]:
            raise InputError(f"mask {args.mask} is {mask.shape[-1]}×{mask.shape[-2]} but image {args.image} is "
                             f"{image.shape[-1]}×{image.shape[-2]} (W×H); they must match")
        try:
            pipe = PilotPipeline.from_pretrained(args.model).to(args.device)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load a pipeline from {args.model}: {str(exc).splitlines()[0]}") from None
        pipe.set_progress_bar_config(disable=False)
        result = pipe(args.prompt, image, mask, negative_prompt=args.negative_prompt, num_inference_steps=args.steps,
                      guidance_scale=args.guidance_scale, gamma=args.gamma, op_interval=args.op_interval,
                      num_gradient_steps=args.gradient_steps, lr=args.lr, momentum=args.momentum, coef=args.coef,
                      sbc=not args.no_sbc, paste_back=args.paste_back,
                      generator=torch.Generator(device=args.device).manual_seed(args.seed), output_type="pil")
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.images[0].save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
