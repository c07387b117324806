"""Cross-attention processors for PILOT: capture prompt-token attention for the semantic-centralization
loss, and Semantic Boundary Control (SBC) — background pixels take no attention from the text.

SBC follows the authors' code (``models/attn_processor.py`` of Lingzhi-Pan/PILOT): *after* the
softmax, background rows keep only their BOS probability and every other text token (prompt
words, EOS, padding) is zeroed, in every batch row (unconditional too), without renormalising.
A background pixel's text attention is then ``p_BOS · v_BOS``: CLIP's text encoder is causal, so
``v_BOS`` is the same for every prompt; only the scalar weight ``p_BOS`` (the share the softmax gave
BOS) still sees the other keys. ``L_sc`` reads the probabilities *before* SBC
(the raw attention maps of the paper); after SBC its background term would be zero by construction.

One ``PilotAttention`` state object is shared by every processor of a UNet; the pipeline sets
the latent mask, which tokens are prompt tokens, and what to capture before each UNet call.
Where diffusers' IP-Adapter processors are loaded, the PILOT processor wraps them and computes
their decoupled image-token attention with the loaded ``to_k_ip``/``to_v_ip`` and the *live*
``scale`` list, so ``pipe.set_ip_adapter_scale`` keeps working; with SBC on, background pixels
take no image-prompt attention either (the image prompt describes the hole, like the text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models import attention_processor


@dataclass
class PilotAttention:
    """State shared by all processors during one UNet forward.

    mask: N×1×h×w latent-resolution mask (1 = region to generate) for the rows of the batch.
    prompt_tokens: B×T bool, True for prompt tokens (not BOS/EOS/padding) in each batch row (L_sc).
    sbc: background pixels keep only their BOS attention (post-softmax, not renormalised).
    capture_sizes: spatial sizes (h·w) of the layers whose attention is captured (empty = none);
    ``captured`` gets (pre-SBC probabilities, soft mask) per captured layer.
    """

    mask: torch.Tensor | None = None
    prompt_tokens: torch.Tensor | None = None
    sbc: bool = True
    capture_sizes: set = field(default_factory=set)
    captured: list = field(default_factory=list)

    def mask_at(self, tokens: int, batch: int, device, dtype) -> torch.Tensor | None:
        """The mask resized to the layer whose flattened spatial size is ``tokens`` (B×tokens)."""
        if self.mask is None:
            return None
        h, w = self.mask.shape[-2:]
        for k in range(8):  # UNet stride-2 stages round up odd sizes
            hh, ww = -(-h // 2**k), -(-w // 2**k)
            if hh * ww == tokens:
                m = F.interpolate(self.mask.float(), size=(hh, ww), mode="area")
                m = m.flatten(1).to(device=device, dtype=dtype)
                return m.repeat(batch // m.shape[0], 1) if batch != m.shape[0] else m
        return None


def sbc_probabilities(probs: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Semantic Boundary Control on B×H×pixels×T probabilities: background pixels (``m`` < 0.5,
    B×pixels) keep only token 0 (BOS); their other text probabilities become 0 (no renormalisation)."""
    keep = torch.ones_like(probs[:1, :1, :1, :])  # 1×1×1×T
    keep[..., 1:] = 0
    background = (m < 0.5)[:, None, :, None]
    return torch.where(background, probs * keep, probs)


class PilotAttnProcessor:
    """Attention with explicit probabilities (so they can be masked and captured).

    ip: the IP-Adapter processor this one replaces (None for plain attention layers).
    """

    def __init__(self, state: PilotAttention, ip=None):
        self.state = state
        self.ip = ip

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, pixels, _ = hidden_states.shape
        ip_states = None
        if isinstance(encoder_hidden_states, tuple):  # (text, [image tokens per IP-Adapter]) from the UNet
            encoder_hidden_states, ip_states = encoder_hidden_states
        if ip_states is not None and self.ip is None:
            raise ValueError("IP-Adapter image tokens reached a layer without IP-Adapter weights; load_ip_adapter first")
        if self.ip is not None and ip_states is None:
            raise ValueError("this UNet has IP-Adapter layers; pass ip_adapter_image (or unload_ip_adapter())")
        cross = encoder_hidden_states is not None
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        context = encoder_hidden_states if cross else hidden_states
        if cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        q = query.view(batch, -1, heads, query.shape[-1] // heads).transpose(1, 2)
        k = key.view(batch, -1, heads, key.shape[-1] // heads).transpose(1, 2)
        v = value.view(batch, -1, heads, value.shape[-1] // heads).transpose(1, 2)

        if not cross:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        else:
            probs = ((q @ k.transpose(-1, -2)) * attn.scale).softmax(dim=-1)  # B×H×pixels×T
            state = self.state
            m = state.mask_at(pixels, batch, probs.device, probs.dtype)
            if pixels in state.capture_sizes:
                state.captured.append((probs, m))  # raw maps: L_sc is defined before SBC
            if state.sbc and m is not None:
                probs = sbc_probabilities(probs, m)
            out = probs.to(v.dtype) @ v
        out = out.transpose(1, 2).reshape(batch, -1, heads * v.shape[-1])
        if ip_states is not None:
            out = out + self._ip_attention(q, ip_states, batch, heads, pixels)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _ip_attention(self, q, ip_states, batch, heads, pixels):
        """Σ_i scale_i · softmax(q k_ip,iᵀ) v_ip,i — IP-Adapter's decoupled cross-attention."""
        total = 0.0
        m = self.state.mask_at(pixels, batch, q.device, q.dtype) if self.state.sbc else None
        for states, scale, to_k, to_v in zip(ip_states, self.ip.scale, self.ip.to_k_ip, self.ip.to_v_ip, strict=True):
            k = to_k(states).view(batch, -1, heads, q.shape[-1]).transpose(1, 2)
            v = to_v(states).view(batch, -1, heads, q.shape[-1]).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, pixels, -1)
            if m is not None:  # same background as the text SBC: no image-prompt attention there
                out = out * (m >= 0.5).to(out.dtype)[..., None]
            total = total + scale * out
        return total


IP_ADAPTER_PROCESSORS = tuple(getattr(attention_processor, name) for name in (
    "IPAdapterAttnProcessor", "IPAdapterAttnProcessor2_0", "IPAdapterXFormersAttnProcessor")
    if hasattr(attention_processor, name))


def install(unet, state: PilotAttention) -> dict:
    """Put a ``PilotAttnProcessor`` on every attention layer (wrapping IP-Adapter processors);
    returns the previous processors so the caller can restore them."""
    previous = dict(unet.attn_processors)
    unet.set_attn_processor({name: PilotAttnProcessor(state, p if isinstance(p, IP_ADAPTER_PROCESSORS) else None)
                             for name, p in previous.items()})
    return previous


def semantic_centralization_terms(captured: list, prompt_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_bg, A_fg): mean over captured layers of the prompt-token attention mass per pixel, averaged
    over heads and over the background / foreground pixels (soft mask weights)."""
    bgs, fgs = [], []
    for probs, m in captured:
        if m is None:
            continue
        rows = probs.shape[0]
        tok = prompt_tokens[-rows:].to(probs.device, probs.dtype)  # conditional rows
        mass = (probs * tok[:, None, None, :]).sum(-1).mean(1)  # B×pixels (mean over heads)
        fgs.append(((mass * m).sum(-1) / m.sum(-1).clamp_min(1.0)).mean())
        bgs.append(((mass * (1 - m)).sum(-1) / (1 - m).sum(-1).clamp_min(1.0)).mean())
    if not bgs:
        raise ValueError("no cross-attention layer matched pilot.call.attention_levels; check the selected levels")
    return torch.stack(bgs).mean(), torch.stack(fgs).mean()


def semantic_centralization_loss(captured: list, prompt_tokens: torch.Tensor) -> torch.Tensor:
    """L_sc = A_bg − A_fg on the pre-SBC attention maps of the captured layers."""
    bg, fg = semantic_centralization_terms(captured, prompt_tokens)
    return bg - fg
