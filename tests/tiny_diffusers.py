"""Tiny, randomly initialised diffusers components built from configs (no network): SD (from
``evaluation.random_sd``), SDXL, an IP-Adapter image encoder and weights, a LoRA."""

from __future__ import annotations

from pathlib import Path

import torch

from evaluation.random_sd import random_sd_components, word_tokenizer


def tiny_sd_components(folder: Path, in_channels: int = 4) -> dict:
    """The ``tiny`` size of ``evaluation.random_sd`` (2-block UNet and VAE, 1-layer CLIP, cross-attention dim 8)."""
    return random_sd_components(folder, "tiny", in_channels=in_channels)


def tiny_inpaint_pipeline(folder: Path):
    from diffusers import StableDiffusionInpaintPipeline

    parts = tiny_sd_components(folder, in_channels=9)
    return StableDiffusionInpaintPipeline(**parts, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)


def tiny_sdxl_components(folder: Path) -> dict:
    """SDXL-shaped: two text encoders (the second with projection), a UNet with text_time added
    conditioning (6 time ids × 4 + 8 pooled = 32 features), cross-attention on 8 + 8 channels."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = word_tokenizer(folder / "tokenizer")
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_attention_heads=2,
                            num_hidden_layers=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=8)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=(2, 4),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), use_linear_projection=True,
                                addition_embed_type="text_time", addition_time_embed_dim=4,
                                projection_class_embeddings_input_dim=32, cross_attention_dim=16)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")  # what SDXL ships
    return {"unet": unet, "vae": vae, "text_encoder": CLIPTextModel(config),
            "text_encoder_2": CLIPTextModelWithProjection(config), "tokenizer": tokenizer,
            "tokenizer_2": word_tokenizer(folder / "tokenizer_2"), "scheduler": scheduler}


def tiny_image_encoder() -> dict:
    """A 1-layer CLIP vision tower with projection and its 16×16 processor (IP-Adapter's encoder)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=8, intermediate_size=16, projection_dim=8,
                                                             num_hidden_layers=1, num_attention_heads=2,
                                                             image_size=16, patch_size=8))
    processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    return {"image_encoder": encoder, "feature_extractor": processor}


def tiny_ip_adapter_state_dict(unet, image_embed_dim: int = 8, seed: int = 2) -> dict:
    """Random IP-Adapter weights in the original checkpoint layout ("image_proj" / "ip_adapter",
    cross-attention layers numbered 1, 3, 5 … in processor order), as ``load_ip_adapter`` reads them."""
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    image_proj = {"proj.weight": torch.randn(cross * 4, image_embed_dim, generator=g) * 0.5,
                  "proj.bias": torch.zeros(cross * 4), "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)}
    ip, key = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        hidden = unet.get_submodule(name[: -len(".processor")]).to_k.out_features
        ip[f"{key}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.5
        ip[f"{key}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.5
        key += 2
    return {"image_proj": image_proj, "ip_adapter": ip}


def tiny_lora(folder: Path, pipeline_cls, seed: int = 3) -> Path:
    """Random (non-zero) LoRA on the tiny SD UNet's attention projections, saved with diffusers'
    ``save_lora_weights`` so ``load_lora_weights(folder)`` reads it like a downloaded LoRA."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = tiny_sd_components(folder / "base")["unet"]
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    pipeline_cls.save_lora_weights(folder / "lora", unet_lora_layers=get_peft_model_state_dict(unet))
    return folder / "lora"


def pilot_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded 32×32 image and a centred 16×16 square mask."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    return image, mask


def run_pilot(pipe, inputs, prompt: str = "a photo of a cat", **kw) -> torch.Tensor:
    """A short seeded PILOT run (6 steps, K=3 every τ=2) returning N×3×H×W in [0, 1]."""
    image, mask = inputs
    args = dict(num_inference_steps=6, op_interval=2, num_gradient_steps=3, guidance_scale=3.0,
                generator=torch.Generator().manual_seed(0), output_type="pt")
    args.update(kw)
    return pipe(prompt, image, mask, **args).images
