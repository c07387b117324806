"""PILOT on Stable Diffusion 1.x / 2.x checkpoints (``PilotPipeline.from_pretrained(dir_or_hub_id)``).

The method itself lives in ``loop.py``; this class registers the SD components (and the
optional ControlNet, T2I-Adapter and IP-Adapter image encoder), brings diffusers' LoRA and
IP-Adapter loaders, and encodes the prompt. It owns no weights of its own.
"""

from __future__ import annotations

import torch
from diffusers.loaders import StableDiffusionLoraLoaderMixin

from pixperfect.pilot.loop import PilotLoop, PromptConditioning, as_ddim, check_prompt_length, prompt_token_mask


class PilotPipeline(PilotLoop, StableDiffusionLoraLoaderMixin):
    """PILOT for SD1.x/2.x: ``pipe(prompt, image, mask_image, …)``; see ``PilotLoop.__call__``."""

    model_cpu_offload_seq = "text_encoder->image_encoder->controlnet->adapter->unet->vae"

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, controlnet=None, adapter=None,
                 image_encoder=None, feature_extractor=None):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              scheduler=as_ddim(scheduler), controlnet=controlnet, adapter=adapter, image_encoder=image_encoder,
                              feature_extractor=feature_extractor)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_prompt(self, prompt: str, negative_prompt: str | None, device, size=None) -> PromptConditioning:
        """Embeddings for [negative, prompt] and the mask of prompt-word tokens (not BOS/EOS/pad)."""
        tok = self.tokenizer
        check_prompt_length(tok, prompt)
        ids = tok([negative_prompt or "", prompt], padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            embeds = self.text_encoder(ids)[0]
        return PromptConditioning(embeds, prompt_token_mask(tok, ids))
