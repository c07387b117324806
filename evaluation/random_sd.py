"""Stable-Diffusion-shaped components with random weights, built from configs (no downloads),
for benchmarks and tests: the cost of PILOT depends on the architecture, not on the weights.

Sizes: ``tiny`` (tests), ``small`` (CPU benchmarks), ``sd15`` (the SD1.5 UNet and VAE configs;
GPU). The tokenizer is written in code: a CLIP BPE vocabulary of a few words.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "photo", "of", "cat", "dog", "red", "blue", "sky", "tree", "house"]

SIZES = {
    "tiny": {"unet": dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, attention_head_dim=2,
                          down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8),
             "vae": dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4), "resolution": 32},
    "small": {"unet": dict(block_out_channels=(64, 128, 256), layers_per_block=1, norm_num_groups=32,
                           attention_head_dim=8, cross_attention_dim=64,
                           down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
              "vae": dict(block_out_channels=(32, 64, 64, 64), layers_per_block=1, norm_num_groups=32),
              "resolution": 256},
    "sd15": {"unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, norm_num_groups=32,
                          attention_head_dim=8, cross_attention_dim=768,
                          down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                          up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
             "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
             "resolution": 512},
}


def word_tokenizer(folder: Path, max_length: int = 16):
    """A real ``CLIPTokenizer`` whose BPE merges spell each of ``WORDS`` as one token."""
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
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def random_sd_components(folder: Path, size: str = "tiny", in_channels: int = 4, seed: int = 0) -> dict:
    """``vae, text_encoder, tokenizer, unet, scheduler`` of the named size (see ``SIZES``)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}; got {size!r}")
    spec = SIZES[size]
    torch.manual_seed(seed)
    tokenizer = word_tokenizer(Path(folder) / "tokenizer")
    dim = spec["unet"]["cross_attention_dim"]
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=2 * dim,
                                                num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=16,
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=spec["resolution"] // 8, in_channels=in_channels, out_channels=4,
                                **spec["unet"])
    n = len(spec["vae"]["block_out_channels"])
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                        latent_channels=4, **spec["vae"])
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}
