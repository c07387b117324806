"""A web page to try a refiner: upload an edited image, draw or upload the mask, compare before/after.

    python -m pixperfect.app --checkpoint outputs/demo/refiner    # then open http://127.0.0.1:7860

Images travel as PNG (lossless) both ways, so the page returns exactly what ``Refiner`` returns.
The same function is an HTTP API (``api_name="refine"``; see ``gradio_client``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool


def mask_from_drawing(drawing) -> "np.ndarray | None":
    """The painted strokes of an ImageEditor value (any colour, any layer) → H×W uint8, 255 = edited."""
    if not drawing or not drawing.get("layers"):
        return None
    alpha = [np.asarray(layer.convert("RGBA"))[:, :, 3] for layer in drawing["layers"] if layer is not None]
    if not alpha:
        return None
    painted = np.max(np.stack(alpha), axis=0) > 0
    return (painted * 255).astype(np.uint8) if painted.any() else None


def refine_images(refiner, image, mask=None, drawing=None, pool: int = 1, region: str = "edit", seed: int = 0,
                  original=None):
    """(before, after) for the slider, the refined image, and a PNG file to download. ``original``: the
    unedited image, when the user has it (``Refiner(…, original=…)``: kept exactly outside the mask)."""
    import gradio as gr
    from PIL import Image

    if image is None:
        raise gr.Error("Upload the edited image first.")
    if mask is None:
        drawn = mask_from_drawing(drawing)
        if drawn is None:
            raise gr.Error("Paint over the edited region, or upload a mask (white = edited).")
        mask = Image.fromarray(drawn).resize(image.size, Image.NEAREST)
    if mask.size != image.size:
        raise gr.Error(f"The mask is {mask.size[0]}×{mask.size[1]} but the image is "
                       f"{image.size[0]}×{image.size[1]}; they must match.")
    if original is not None:
        if original.size != image.size:
            raise gr.Error(f"The original is {original.size[0]}×{original.size[1]} but the image is "
                           f"{image.size[0]}×{image.size[1]}; they must match.")
        if region != "edit":
            raise gr.Error("With the original the background is the original's: choose region 'edit', "
                           "or remove the original to refine everywhere.")
        original = original.convert("RGB")
    binary = Image.fromarray(((np.asarray(mask.convert("L")) > 127) * 255).astype(np.uint8))
    generator = torch.Generator(device=refiner.device).manual_seed(int(seed))
    refined = refiner(image.convert("RGB"), binary, pool=int(pool), region=region, generator=generator,
                      original=original)
    out_file = Path(tempfile.mkdtemp(prefix="pixperfect_")) / "refined.png"
    refined.save(out_file)
    return (image.convert("RGB"), refined), refined, str(out_file)


def build_app(refiner, title: str = "PixPerfect refiner"):
    """The Gradio Blocks page around ``refiner`` (a ``pixperfect.Refiner``)."""
    import gradio as gr

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nUpload an LDM-edited image, paint over the edited region (or upload its mask, "
                    "white = edited), and refine: colour shift, texture mismatch and seams are corrected.")
        with gr.Row():
            image = gr.Image(label="Edited image", type="pil", format="png", image_mode="RGB", elem_id="image")
            drawing = gr.ImageEditor(label="Paint the edited region", type="pil", format="png", layers=False,
                                     brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"), elem_id="drawing")
            mask = gr.Image(label="…or upload the mask (white = edited)", type="pil", format="png", image_mode="L",
                            elem_id="mask")
        with gr.Row():
            original = gr.Image(label="Optional: the unedited original (kept exactly outside the mask)", type="pil",
                                format="png", image_mode="RGB", elem_id="original")
            pool = gr.Slider(1, 16, value=1, step=1, label="Pooling variants (1 = off)")
            region = gr.Radio(["edit", "full"], value="edit", label="Region",
                              info="edit: keep the background bit for bit; full: refine everywhere")
            seed = gr.Number(0, precision=0, label="Seed")
        run = gr.Button("Refine", variant="primary", elem_id="run")
        with gr.Row():
            compare = gr.ImageSlider(label="Before / after", type="pil", format="png", elem_id="compare")
            refined = gr.Image(label="Refined", type="pil", format="png", interactive=False, elem_id="refined")
        download = gr.File(label="Download the refined PNG", elem_id="download")
        image.change(lambda im: im, inputs=image, outputs=drawing, api_name=False)  # draw on the image itself
        run.click(lambda *a: refine_images(refiner, *a), inputs=[image, mask, drawing, pool, region, seed, original],
                  outputs=[compare, refined, download], api_name="refine")
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixperfect.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="exported refiner folder (config.json + model.safetensors)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to share on a network)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    from pixperfect.refine import InputError, load_refiner, resolve_device

    try:
        refiner = load_refiner(args.checkpoint, resolve_device(args.device))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    build_app(refiner).launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
