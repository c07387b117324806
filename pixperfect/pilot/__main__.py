"""Inpaint an image with PILOT.

    python -m pixperfect.pilot --model DIR_OR_HUB_ID --image in.png --mask mask.png --prompt "a red car" --out out.png
        [--lora DIR_OR_FILE] [--ip-adapter FILE --ip-adapter-image ref.png]
        [--controlnet DIR --control-image map.png] [--adapter DIR --adapter-image map.png]

SD1.x/2.x or SDXL is picked from the checkpoint. The mask is read as grayscale, white (> 0.5)
= region to generate. Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixperfect.pilot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SD1.x/2.x/SDXL pipeline folder or hub id")
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
    parser.add_argument("--coef", type=float, default=1.0, help="λ scale of L_sc (0 = no L_sc)")
    parser.add_argument("--bg-weight", type=float, default=1.0, help="weight of L_bg (0 = no L_bg)")
    parser.add_argument("--no-sbc", action="store_true", help="turn Semantic Boundary Control off")
    parser.add_argument("--paste-back", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--lora", default=None, help="LoRA folder, file or hub id (load_lora_weights)")
    parser.add_argument("--lora-scale", type=float, default=1.0)
    parser.add_argument("--ip-adapter", default=None, help="IP-Adapter weight file (image_encoder/ beside it)")
    parser.add_argument("--ip-adapter-image", default=None)
    parser.add_argument("--ip-adapter-scale", type=float, default=1.0)
    parser.add_argument("--controlnet", default=None, help="ControlNet folder or hub id")
    parser.add_argument("--control-image", default=None)
    parser.add_argument("--adapter", default=None, help="T2I-Adapter folder or hub id")
    parser.add_argument("--adapter-image", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), float32, float16, bfloat16")
    args = parser.parse_args(argv)

    from pixperfect.pilot.load import load_pilot, resolve_device
    from pixperfect.pilot.loop import check_settings
    from pixperfect.refine import InputError, read_image

    settings = dict(num_inference_steps=args.steps, guidance_scale=args.guidance_scale, gamma=args.gamma,
                    op_interval=args.op_interval, num_gradient_steps=args.gradient_steps, lr=args.lr,
                    momentum=args.momentum, coef=args.coef, bg_weight=args.bg_weight, sbc=not args.no_sbc,
                    paste_back=args.paste_back, gradient_checkpointing=args.gradient_checkpointing)
    try:
        flags = {k: "--" + k.replace("_", "-") for k in settings}
        check_settings(settings, {**flags, "num_inference_steps": "--steps", "num_gradient_steps": "--gradient-steps"})
        image = read_image(args.image, "RGB")
        mask = read_image(args.mask, "L")
        if mask.shape[-2:] != image.shape[-2:]:
            raise InputError(f"mask {args.mask} is {mask.shape[-1]}×{mask.shape[-2]} but image {args.image} is "
                             f"{image.shape[-1]}×{image.shape[-2]} (W×H); they must match")
        for flag, image_flag in (("controlnet", "control_image"), ("adapter", "adapter_image"),
                                 ("ip_adapter", "ip_adapter_image")):
            if (getattr(args, flag) is None) != (getattr(args, image_flag) is None):
                raise InputError(f"--{flag.replace('_', '-')} and --{image_flag.replace('_', '-')} go together")
        extra = {k: read_image(getattr(args, k), "RGB") for k in ("control_image", "adapter_image", "ip_adapter_image")
                 if getattr(args, k) is not None}
        device = resolve_device(args.device)
        pipe = load_pilot(args.model, device=str(device), dtype=args.dtype, controlnet=args.controlnet,
                          adapter=args.adapter, lora=args.lora, lora_scale=args.lora_scale,
                          ip_adapter=args.ip_adapter, ip_adapter_scale=args.ip_adapter_scale)  # errors name the source
        pipe.set_progress_bar_config(disable=False)
        result = pipe(args.prompt, image, mask, negative_prompt=args.negative_prompt, **settings,
                      generator=torch.Generator(device=device).manual_seed(args.seed), output_type="pil", **extra)
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
