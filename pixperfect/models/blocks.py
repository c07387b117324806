"""Building blocks of the CM-GAN-style refiner and its discriminator.

Written by hand because no library in our stack ships them: Fast Fourier Convolutions
(LaMa), StyleGAN2-style modulated convolution with weight demodulation, and CM-GAN's
spatial modulation. Every block works on any H×W and in bf16 autocast (the FFT runs in
float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with the √2 gain that keeps activations unit-variance (StyleGAN).

    The gain is applied in place on the fresh activation: one full-size tensor fewer per call
    (autograd differentiates leaky_relu through its input, so the in-place scale is safe).
    """
    return F.leaky_relu(x, LRELU_SLOPE).mul_(LRELU_GAIN)


def _recorded(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def lrelu_(x: torch.Tensor) -> torch.Tensor:
    """``lrelu`` in place on a tensor the caller has just created: no new full-size tensor at
    inference. Out of place where autograd records (it saves leaky_relu_'s result)."""
    if _recorded(x):
        return lrelu(x)
    return F.leaky_relu_(x, LRELU_SLOPE).mul_(LRELU_GAIN)


def add_(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, written into ``a`` (a tensor the caller has just created) where autograd does not record."""
    return a + b if _recorded(a, b) else a.add_(b)


class Conv2d(nn.Conv2d):
    """'Same'-padded convolution with Kaiming (He, fan-in) initialisation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, bias: bool = True):
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(in_ch * kernel_size * kernel_size))
        if bias:
            nn.init.zeros_(self.bias)


class DownBlock(nn.Module):
    """Residual stride-2 encoder stage: conv3×3 → conv3×3/2, plus a 1×1 skip on an average pool."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = Conv2d(in_ch, in_ch, 3)
        self.conv2 = Conv2d(in_ch, out_ch, 3, stride=2)
        self.skip = Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(lrelu(self.conv1(x)))
        s = self.skip(F.avg_pool2d(x, 2))
        # lrelu(h + s) / √2: the √2 gain and the 1/√2 of the residual sum cancel (positive scale)
        h = add_(h, s)
        return F.leaky_relu(h, LRELU_SLOPE) if _recorded(h) else F.leaky_relu_(h, LRELU_SLOPE)


# --------------------------------------------------------------------------------------
# Fast Fourier Convolution (Chi et al. 2020; LaMa, Suvorov et al. 2022)
# --------------------------------------------------------------------------------------
class FourierUnit(nn.Module):
    """A 1×1 convolution on the real FFT of the feature map: every output sees every input pixel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(2 * channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft2(x.float(), norm="ortho")  # N×C×H×(W/2+1) complex
            feat = torch.cat([spec.real, spec.imag], dim=1)
            feat = lrelu(self.conv(feat))
            real, imag = feat.chunk(2, dim=1)
            out = torch.fft.irfft2(torch.complex(real, imag), s=(h, w), norm="ortho")
        return out.to(x.dtype)


class SpectralTransform(nn.Module):
    """Global branch of an FFC: 1×1 reduce → Fourier unit (+ residual) → 1×1 expand."""

    def __init__(self, channels: int):
        super().__init__()
        half = max(channels // 2, 1)
        self.reduce = Conv2d(channels, half, 1)
        self.fourier = FourierUnit(half)
        self.expand = Conv2d(half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = lrelu(self.reduce(x))
        return self.expand(h + self.fourier(h))


class FFC(nn.Module):
    """Fast Fourier Convolution on a (local, global) channel split."""

    def __init__(self, channels: int, global_ratio: float = 0.75):
        super().__init__()
        self.c_global = int(round(channels * global_ratio))
        self.c_local = channels - self.c_global
        if self.c_local <= 0 or self.c_global <= 0:
            raise ValueError(f"FFC needs both branches non-empty; got channels={channels}, ratio={global_ratio}")
        self.l2l = Conv2d(self.c_local, self.c_local, 3)
        self.g2l = Conv2d(self.c_global, self.c_local, 3)
        self.l2g = Conv2d(self.c_local, self.c_global, 3)
        self.g2g = SpectralTransform(self.c_global)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_l, x_g = x.split([self.c_local, self.c_global], dim=1)
        out_l = self.l2l(x_l) + self.g2l(x_g)
        out_g = self.l2g(x_l) + self.g2g(x_g)
        return lrelu(torch.cat([out_l, out_g], dim=1))


class FFCResBlock(nn.Module):
    """Two FFCs with an identity skip: the image-wide receptive field of the bottleneck."""

    def __init__(self, channels: int, global_ratio: float = 0.75):
        super().__init__()
        self.ffc1 = FFC(channels, global_ratio)
        self.ffc2 = FFC(channels, global_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.ffc2(self.ffc1(x))) / math.sqrt(2.0)


# --------------------------------------------------------------------------------------
# Modulation (StyleGAN2, Karras et al. 2020; CM-GAN, Zheng et al. 2022)
# --------------------------------------------------------------------------------------
class ModulatedConv2d(nn.Module):
    """3×3 convolution whose input channels are scaled by a per-sample style, with weight demodulation.

    Implemented as scale → shared conv → per-(sample, out-channel) rescale, which is exactly
    StyleGAN2's grouped formulation for a linear conv but runs as one ordinary convolution.
    With batch 1 (inference) the style, the demodulation and ``out_scale`` are folded into the
    weight instead: one convolution with a fused bias and no full-size elementwise passes
    (the same output within float rounding; tested).
    """

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, kernel_size: int = 3, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.affine = nn.Linear(style_dim, in_ch)
        nn.init.normal_(self.affine.weight, std=1.0 / math.sqrt(style_dim))
        nn.init.ones_(self.affine.bias)  # style starts at 1: a plain conv at init
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor, out_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``out_scale`` (N×Cout, optional): multiplies the output, bias included."""
        s = self.affine(style)  # N×Cin
        w = self.weight * self.scale
        d = None
        if self.demodulate:
            # d[n, o] = 1 / sqrt(sum_{i,k} (w[o,i,k] * s[n,i])^2)
            d = torch.rsqrt((s.square() @ w.square().sum(dim=(2, 3)).t()) + 1e-8)  # N×Cout
        if x.shape[0] == 1:  # fold: conv(x·s, w)·d·r + b·r = conv(x, w·s·d·r) + b·r
            w_n = w * s[0][None, :, None, None]
            out_w = d[0] if d is not None else None
            if out_scale is not None:
                out_w = out_scale[0] if out_w is None else out_w * out_scale[0]
            bias = self.bias if out_scale is None else self.bias * out_scale[0]
            if out_w is not None:
                w_n = w_n * out_w[:, None, None, None]
            return F.conv2d(x, w_n.to(x.dtype), bias.to(x.dtype), padding=self.padding)
        out = F.conv2d(x * s[:, :, None, None].to(x.dtype), w.to(x.dtype), padding=self.padding)
        if d is not None:
            out = out * d[:, :, None, None].to(out.dtype)
        out = out + self.bias[None, :, None, None].to(out.dtype)
        if out_scale is not None:
            out = out * out_scale[:, :, None, None].to(out.dtype)
        return out


class GlobalModulationBlock(nn.Module):
    """Decoder stage, global half: two style-modulated convs on (upsampled features + encoder skip)."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int, style_dim: int):
        super().__init__()
        self.conv1 = ModulatedConv2d(in_ch, out_ch, style_dim)
        self.skip = Conv2d(skip_ch, out_ch, 1)
        self.conv2 = ModulatedConv2d(out_ch, out_ch, style_dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = add_(lrelu_(self.conv1(x, style)), self.skip(skip))
        return lrelu_(self.conv2(h, style))


class SpatialModulationBlock(nn.Module):
    """Decoder stage, spatial half (CM-GAN): spatially varying scale/shift predicted from the global
    block's output, a conv with spatial-aware demodulation, then the encoder skip is added back.

    The per-pixel scale A and shift B let the decoder correct colour and texture locally, where a
    single global style cannot.
    """

    def __init__(self, channels: int, skip_ch: int, style_dim: int):
        super().__init__()
        self.to_affine = Conv2d(channels, 2 * channels, 3)
        nn.init.zeros_(self.to_affine.weight)  # A=1, B=0 at init
        self.conv = ModulatedConv2d(channels, channels, style_dim, demodulate=False)
        self.skip = Conv2d(skip_ch, channels, 1)

    def forward(self, h: torch.Tensor, skip: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_affine(h).chunk(2, dim=1)
        a = 1.0 + gamma
        # Spatial-aware demodulation: assume unit-variance inputs; the expected output variance is
        # sum(w^2 * s^2) * E[A^2], so divide by its square root per sample and output channel.
        # E[A^2] as a norm: one read of A, no full-size temporary.
        s = self.conv.affine(style)
        w = self.conv.weight * self.conv.scale
        a_sq = torch.linalg.vector_norm(a, dim=(1, 2, 3), dtype=torch.float32).square() / a[0].numel()
        var = (s.square() @ w.square().sum(dim=(2, 3)).t()) * a_sq[:, None]
        out = self.conv(h * a, style, out_scale=torch.rsqrt(var + 1e-8))
        return add_(lrelu_(add_(out, beta)), self.skip(skip))
