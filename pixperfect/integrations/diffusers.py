"""One line after any diffusers inpainting pipeline (StableDiffusionInpaintPipeline, FluxFillPipeline,
this repo's PilotPipeline, …):

    out = pipe(prompt, image=image, mask_image=mask)
    refined = refine_pipeline_output(refiner, image, mask, out)      # same kind as out.images

or wrap the pipeline once: ``RefinedInpaintPipeline(pipe, refiner)(prompt, image=image, mask_image=mask)``.

Paste-back first: a pipeline decodes the *whole* latent, so its background has drifted from the
original (and may be at a size rounded to the VAE's multiple). The refiner gets the original
(``Refiner(…, original=…)``): the edit is pasted into it through the mask binarised at 0.5 (as the
pipelines binarise theirs), the refiner fixes the edit and its seam, and every pixel outside the
mask comes back exactly as in the original. ``paste_back=False`` refines the raw output everywhere
(``region="full"``); ``paste_back=True, region="full"`` pastes through the mask as it is and then
refines everywhere.
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.nn.functional as F

from pixperfect.inference.convert import from_tensor, to_tensor


def _match_batch(t: torch.Tensor, n: int, what: str) -> torch.Tensor:
    """One original / mask per prompt → one per output image (``num_images_per_prompt``)."""
    if t.shape[0] == n:
        return t
    if n % t.shape[0] == 0:
        return t.repeat_interleave(n // t.shape[0], dim=0)
    raise ValueError(f"{what} has {t.shape[0]} images but the pipeline returned {n}; expected 1 or a divisor of {n}")


def refine_pipeline_output(refiner, original, mask, pipe_output, paste_back: bool = True, region: str | None = None,
                           **refine_kwargs):
    """Refine an inpainting pipeline's output; returns what ``pipe_output`` holds, refined.

    ``original`` and ``mask`` are what the pipeline got as ``image`` and ``mask_image`` (PIL, lists,
    numpy or torch; mask white = inpainted). ``pipe_output`` is the pipeline's return value (an
    output object with ``.images``, a ``return_dict=False`` tuple) or its images (list of PIL, numpy
    N×H×W×C, torch N×C×H×W). The result is that same kind at the original's size.
    ``refine_kwargs`` go to the refiner (``pool``, ``generator``, ``metric``, …).
    """
    if hasattr(pipe_output, "images"):
        result = copy.copy(pipe_output)
        result.images = refine_pipeline_output(refiner, original, mask, pipe_output.images, paste_back, region,
                                               **refine_kwargs)
        return result
    if isinstance(pipe_output, tuple):
        return (refine_pipeline_output(refiner, original, mask, pipe_output[0], paste_back, region, **refine_kwargs),
                *pipe_output[1:])
    generated, kind = to_tensor(pipe_output, "pipeline output", 3)
    if generated.ndim != 4 or generated.shape[1] != 3:
        raise ValueError("the pipeline output must be decoded images (output_type 'pil', 'np' or 'pt'), "
                         f"not latents; got shape {tuple(generated.shape)}")
    if not generated.is_floating_point():
        generated = generated.float()
    image, _ = to_tensor(original, "original image", 3)
    m, _ = to_tensor(mask, "mask", 1)
    n = generated.shape[0]
    image = _match_batch(image.float().to(generated.device), n, "original image")
    m = _match_batch(m.float().to(generated.device), n, "mask")
    if m.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"mask is {tuple(m.shape[-2:])} but the original image is {tuple(image.shape[-2:])} (H, W)")
    if generated.shape[-2:] != image.shape[-2:]:  # pipelines round sizes to the VAE's multiple
        generated = F.interpolate(generated, size=image.shape[-2:], mode="bicubic", align_corners=False,
                                  antialias=True).clamp(0, 1)
    m = m.clamp(0, 1)
    region = region or ("edit" if paste_back else "full")
    if paste_back and region == "edit":  # the original outside the mask, bit for bit
        refined = refiner(generated, m, region=region, original=image, **refine_kwargs)
    else:
        x = m * generated + (1 - m) * image if paste_back else generated
        refined = refiner(x, m, region=region, **refine_kwargs)
    if kind.name == "torch":
        refined = refined.to(kind.device)
    return from_tensor(refined, kind)


class RefinedInpaintPipeline:
    """An inpainting pipeline followed by a refiner: ``__call__`` runs ``pipe`` and refines its output.

    Everything else (``.to``, components, schedulers, LoRA loading) is the wrapped pipeline's.
    ``refine_kwargs`` (``pool``, ``region``, ``paste_back``, ``generator``…) apply to every call and
    can be overridden per call with ``refine={...}``.
    """

    def __init__(self, pipe, refiner, **refine_kwargs):
        self.pipe = pipe
        self.refiner = refiner
        self.refine_kwargs = refine_kwargs

    def __getattr__(self, name):
        return getattr(self.__dict__["pipe"], name)

    def __call__(self, *args, refine: dict | None = None, **kwargs):
        try:  # by the pipeline's own signature: FluxFillPipeline's 2nd positional is prompt_2, SD's is image
            bound = inspect.signature(self.pipe.__call__).bind_partial(*args, **kwargs).arguments
        except TypeError:
            bound = kwargs
        image, mask = bound.get("image"), bound.get("mask_image")
        if image is None or mask is None:
            raise TypeError("RefinedInpaintPipeline needs the inpainting inputs: pass image= and mask_image=")
        if kwargs.get("output_type") == "latent":
            raise ValueError("output_type='latent' gives nothing to refine; use 'pil', 'np' or 'pt'")
        output = self.pipe(*args, **kwargs)
        return refine_pipeline_output(self.refiner, image, mask, output, **{**self.refine_kwargs, **(refine or {})})
