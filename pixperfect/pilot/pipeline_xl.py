"""PILOT on SDXL checkpoints (``PilotXLPipeline.from_pretrained(dir_or_hub_id)``).

What differs from SD1.x/2.x is only the conditioning: two text encoders whose penultimate
hidden states are concatenated, the second one's pooled embedding, and the size/crop
``time_ids`` — passed to the UNet as ``added_cond_kwargs`` in both the sampling and the
gradient pass (``loop.py``). An empty negative prompt gives zero embeddings, as in diffusers'
SDXL pipeline (``force_zeros_for_empty_prompt``).
"""

from __future__ import annotations

import torch
from diffusers.loaders import StableDiffusionXLLoraLoaderMixin

from pixperfect.pilot.loop import PilotLoop, PromptConditioning, as_ddim, check_prompt_length, prompt_token_mask


class PilotXLPipeline(PilotLoop, StableDiffusionXLLoraLoaderMixin):
    """PILOT for SDXL: ``pipe(prompt, image, mask_image, …)``; see ``PilotLoop.__call__``."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->image_encoder->controlnet->adapter->unet->vae"

    def __init__(self, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet, scheduler, controlnet=None,
                 adapter=None, image_encoder=None, feature_extractor=None, force_zeros_for_empty_prompt: bool = True):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                              tokenizer_2=tokenizer_2, unet=unet, scheduler=as_ddim(scheduler), controlnet=controlnet,
                              adapter=adapter, image_encoder=image_encoder, feature_extractor=feature_extractor)
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_prompt(self, prompt: str, negative_prompt: str | None, device, size=None) -> PromptConditioning:
        """[negative, prompt] rows: concatenated penultimate states of both encoders, the pooled
        embedding of the second, and time_ids (original size = target size = ``size``, no crop)."""
        hidden, pooled, tokens = [], None, None
        for tok, enc in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            check_prompt_length(tok, prompt)
            ids = tok([negative_prompt or "", prompt], padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(device)
            with torch.no_grad():
                out = enc(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]  # CLIPTextModelWithProjection: text_embeds
            if tokens is None:  # prompt-word positions from the first tokenizer (both share the CLIP vocabulary)
                tokens = prompt_token_mask(tok, ids)
        embeds = torch.cat(hidden, dim=-1)
        if negative_prompt is None and self.config.force_zeros_for_empty_prompt:
            embeds[0], pooled[0] = 0, 0
        h, w = size if size is not None else (self.unet.config.sample_size * self.vae_scale_factor,) * 2
        time_ids = torch.tensor([[h, w, 0, 0, h, w]] * 2, device=device, dtype=embeds.dtype)
        self._check_added_dims(pooled, time_ids)
        return PromptConditioning(embeds, tokens, {"text_embeds": pooled, "time_ids": time_ids})

    def _check_added_dims(self, pooled: torch.Tensor, time_ids: torch.Tensor) -> None:
        cfg = self.unet.config
        got = cfg.addition_time_embed_dim * time_ids.shape[-1] + pooled.shape[-1]
        if cfg.projection_class_embeddings_input_dim != got:
            raise ValueError(f"UNet expects {cfg.projection_class_embeddings_input_dim} added-embedding features but "
                             f"time_ids + pooled text give {got}; is this an SDXL base UNet with matching encoders?")
