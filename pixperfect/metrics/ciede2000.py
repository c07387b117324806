"""CIEDE2000 colour difference on torch tensors.

Written by hand because neither torchmetrics nor kornia provides it; scikit-image's
``deltaE_ciede2000`` does (the tests check this one against it) but works on numpy, one image at a
time, and could not run batched on the training device during validation.
Formula: Sharma, Wu & Dalal (2005), with kL = kC = kH = 1.
"""

from __future__ import annotations

import torch
from kornia.color import rgb_to_lab


def _hue_deg(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    h = torch.rad2deg(torch.atan2(b, a))
    h = torch.where(h < 0, h + 360.0, h)
    return torch.where((a == 0) & (b == 0), torch.zeros_like(h), h)


def ciede2000_lab(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """ΔE00 per pixel between two N×3×H×W CIELAB images → N×H×W."""
    L1, a1, b1 = lab1.double().unbind(1)
    L2, a2, b2 = lab2.double().unbind(1)
    c_bar = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p, h2p = _hue_deg(b1, a1p), _hue_deg(b2, a2p)

    dL = L2 - L1
    dC = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(c1p * c2p == 0, torch.zeros_like(dh), dh)
    dH = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dh) / 2)

    L_bar = (L1 + L2) / 2
    cp_bar = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = torch.where(
        c1p * c2p == 0, h_sum,
        torch.where((h1p - h2p).abs() <= 180, h_sum / 2,
                    torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)))
    t = (1 - 0.17 * torch.cos(torch.deg2rad(h_bar - 30)) + 0.24 * torch.cos(torch.deg2rad(2 * h_bar))
         + 0.32 * torch.cos(torch.deg2rad(3 * h_bar + 6)) - 0.20 * torch.cos(torch.deg2rad(4 * h_bar - 63)))
    d_theta = 30 * torch.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (L_bar - 50) ** 2 / torch.sqrt(20 + (L_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * r_c
    de = torch.sqrt((dL / s_l) ** 2 + (dC / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dC / s_c) * (dH / s_h))
    return de.to(lab1.dtype)


def ciede2000(rgb1: torch.Tensor, rgb2: torch.Tensor) -> torch.Tensor:
    """ΔE00 per pixel between two N×3×H×W sRGB images in [0, 1] (D65) → N×H×W."""
    return ciede2000_lab(rgb_to_lab(rgb1.float().clamp(0, 1)), rgb_to_lab(rgb2.float().clamp(0, 1)))


__all__ = ["ciede2000", "ciede2000_lab"]
