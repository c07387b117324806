"""Tiny, randomly initialised diffusers components built from configs (no network): a CLIP
tokenizer written in code, a 1-layer CLIP text encoder, a 2-block UNet and a 2-block VAE."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "photo", "of", "cat", "dog", "red", "blue", "sky", "tree", "house"]


def tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for w in WORDS for c in w})
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = ["#version: 0.2"]
    for w in WORDS:  # merge each word left to right into one token
        token = w[0]
        for i, c in enumerate(w[1:], start=1):
            nxt = c + ("</w>" if i == len(w) - 1 else "")
            merges.append(f"{token} {nxt}")
            token = token + nxt
            vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_sd_components(folder: Path, in_channels: int = 4, cross_attention_dim: int = 8) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(folder / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=cross_attention_dim,
                                                intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
                                                max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                                pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=cross_attention_dim)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def tiny_inpaint_pipeline(folder: Path):
    from diffusers import StableDiffusionInpaintPipeline

    parts = tiny_sd_components(folder, in_channels=9)
    return StableDiffusionInpaintPipeline(**parts, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
