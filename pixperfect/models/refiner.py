"""The PixPerfect refiner: a CM-GAN-style, fully convolutional image-to-image network.

It takes an LDM-edited image and its edit mask and predicts a correction of it (per-pixel and
global colour transforms plus a residual, or a plain residual) that removes the low-level
artifacts (colour shift, texture mismatch, seams) at and around the edit.
``save_pretrained``/``from_pretrained`` write and read ``config.json`` + ``model.safetensors``
with no Lightning or Hydra involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from pixperfect.models.blocks import (
    Conv2d,
    DownBlock,
    FFCResBlock,
    GlobalModulationBlock,
    SpatialModulationBlock,
    lrelu,
)
from pixperfect.models.pretrained import PretrainedMixin
from pixperfect.models.seam_offset import DEFAULT_CG, SHRINKAGES, cg_iterations, seam_offset
from pixperfect.utils import check_image_and_mask, pad_to_multiple


RING_FEATURES = 13  # RGB mean and std inside and outside the boundary (12), and a "both rings exist" flag
RING_MEAN_FEATURES = 7  # boundary_stats="mean": the two RGB means and the flag


def square_max_pool(x: torch.Tensor, radius: int) -> torch.Tensor:
    """``F.max_pool2d(x, 2r+1, stride=1, padding=r)`` as a row pass then a column pass: the same
    values (a max over a square is the max of the row maxima) in O(r) instead of O(r²) per pixel
    (a 33×33 window at 512² took 0.2 s per call on a CPU)."""
    k = 2 * radius + 1
    rows = F.max_pool2d(x, (1, k), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, (k, 1), stride=1, padding=(radius, 0))


def ring_statistics(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """N×13: RGB mean/std in a ring just inside and a ring just outside the mask boundary (width
    ~1/32 of the short side), in [-1, 1] units, plus a flag that both rings are non-empty."""
    width = max(2, min(image.shape[-2:]) // 32)
    m = (mask > 0.5).to(image.dtype)
    dilated = square_max_pool(m, width)
    eroded = 1.0 - square_max_pool(1.0 - m, width)
    stats = []
    areas = []
    x = image * 2.0 - 1.0
    for ring in (m - eroded, dilated - m):
        area = ring.sum(dim=(2, 3)).clamp_min(1.0)
        mean = (x * ring).sum(dim=(2, 3)) / area
        var = ((x - mean[:, :, None, None]).square() * ring).sum(dim=(2, 3)) / area
        stats += [mean, var.clamp_min(0).sqrt()]
        areas.append(ring.sum(dim=(2, 3)))
    both = ((areas[0] > 0) & (areas[1] > 0)).to(image.dtype)
    return torch.cat([*(s * both for s in stats), both], dim=1)


class RefinerParts(NamedTuple):
    """``CMGANRefiner.forward_parts``: the output, the seam prior's offset (None without
    ``seam_prior``) and the scale on it (None without ``seam_gain``: the offset is added as it is),
    and the head's own correction Δ before clamping (``image = clamp(x + scale·offset + Δ)``)."""

    image: torch.Tensor
    offset: torch.Tensor | None
    scale: torch.Tensor | None
    delta: torch.Tensor
    gate_logit: torch.Tensor | None = None  # N×1, with ``cast_gate``: the logit of "this edit has a colour cast"


class CMGANRefiner(nn.Module, PretrainedMixin):
    """Encoder (stride-2 stages) → FFC bottleneck → global code → cascaded modulation decoder.

    Args:
        channels: feature width per scale, from full resolution down to the bottleneck; the
            network downsamples ``len(channels) - 1`` times (1/16 for 5 entries, 1/32 for 6).
        num_ffc_blocks: FFC residual blocks at the bottleneck.
        style_dim: width of the global code.
        ffc_global_ratio: share of bottleneck channels in the FFC's spectral branch.
        output: ``"residual"`` — the head predicts an additive RGB residual; ``"affine"`` — it
            predicts a per-pixel 3×3 colour matrix and bias, ``x + M(x)·x + b``, by default plus
            the global transform below. Colour casts are affine in colour space: the affine head
            fixes them with one transform and smooth maps instead of content-shaped residuals.
        global_transform: add one 3×3 + bias colour transform of the edit per image, applied
            through the mask (None: with ``output="affine"`` only, as before the option).
            ``output="residual", global_transform=True`` is the transform without the per-pixel
            matrix: it learns casts as the affine head does, and alone it harms held-out edit
            noise (docs/learning_diagnostics.md, "The global transform learns the casts").
        global_scale: a constant factor on the global transform (StyleGAN's learning-rate
            multiplier): Adam steps each weight by about the learning rate whatever its gradient's
            size, so a factor below 1 slows the transform by as much. Slowing it 16 times did not
            stop its harm on edit noise (docs/learning_diagnostics.md).
        global_source: what the global transform is computed from: ``"code"``, the global code (as
            the affine head always has), or ``"rings"``, only the 13 colour statistics of the two
            rings at the mask boundary (all 13 whatever ``boundary_stats`` is), which carry less of
            a photo's identity than the code (measured: it learns casts more slowly and harms
            held-out edit noise less).
        boundary_stats: add to the global code the per-channel colour mean/std of two thin
            rings, just inside and just outside the mask boundary. The colour jump across the
            boundary is the evidence of a cast; given to the code directly, it is learned in
            hundreds of steps instead of being discovered from pixels (measured; README).
            ``"mean"``: the ring means only — the stds also differ where only the texture does
            (a smooth re-inpainted band), which the global head then mistakes for a cast.
        seam_prior: give the network the seam offset (``pixperfect/models/seam_offset.py``: the
            colour jump across the mask boundary, filled smoothly into the edit) as three more
            input channels, and add it to the output through a per-pixel gain the head predicts,
            ``x + (1 + g)·offset + Δ``. The untrained refiner then returns ``x + offset`` (a
            training-free seam fix: 0.65× the input's masked L1 on the demo's held-out set), and
            training learns where not to apply it (texture-only and re-inpainted seams). Not in
            the paper; measured in docs/seam_prior.md.
        seam_gain: with ``seam_prior``, predict the gain g (true) or add the offset as it is
            (false: ``x + offset + Δ``; training cannot turn the prior down through a gain).
        seam_gap: how far from the seam the prior reads the jump, as a fraction of the image's
            short side (0 = next to the seam, the first estimator; ``1/64`` = 4 px at 256²: a
            feathered seam, which the one-pixel jump compensates away, is then read whole).
        seam_shrinkage: how the prior turns a jump within the noise down: ``"james_stein"`` sets
            it to zero (an edit without a cast is left alone), ``"wiener"`` only scales it down
            (the prior before session 10; exports saved before the option load with it).
        seam_cg: conjugate-gradient iterations that take the prior's push-pull fill towards the exact
            membrane, as a fraction of the image's longer side (0.25 = 64 at 256²; 0 = push-pull
            only, the prior before session 15, with which older exports load). A cast that varies
            along the seam is filled harmonically instead of being smoothed towards its mean.

    Forward: ``x_gen`` N×3×H×W in [0, 1], ``mask`` N×1×H×W (1 = edited) → N×3×H×W in [0, 1].
    Any H×W: inputs are padded to a multiple of ``2**(len(channels)-1)`` inside and cropped back.
    The last layer is zero-initialised, so an untrained refiner returns its input exactly (its
    input plus the seam offset with ``seam_prior``).
    """

    @register_to_config
    def __init__(
        self,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        num_ffc_blocks: int = 6,
        style_dim: int = 512,
        ffc_global_ratio: float = 0.75,
        output: str = "affine",
        global_transform: bool | None = None,
        global_scale: float = 1.0,
        global_source: str = "code",
        boundary_stats: bool | str = True,
        seam_prior: bool = False,
        seam_gain: bool = True,
        seam_gap: float = 0.0,
        seam_shrinkage: str = "james_stein",
        seam_cg: float = DEFAULT_CG,
        cast_gate: bool = False,
    ):
        super().__init__()
        if output not in ("residual", "affine"):
            raise ValueError(f"output must be 'residual' or 'affine'; got {output!r}")
        self.output = output
        if global_transform not in (None, True, False):  # bool("false") would be True
            raise ValueError(f"global_transform must be true, false or null; got {global_transform!r}")
        self.global_transform = output == "affine" if global_transform is None else bool(global_transform)
        if isinstance(global_scale, bool) or not isinstance(global_scale, (int, float)) \
                or not 0 < global_scale < float("inf"):
            raise ValueError(f"global_scale must be a finite number > 0; got {global_scale!r}")
        self.global_scale = float(global_scale)
        if global_source not in ("code", "rings"):
            raise ValueError(f"global_source must be 'code' or 'rings'; got {global_source!r}")
        if global_source != "code" and not self.global_transform:
            raise ValueError(f"global_source={global_source!r} needs the global transform (global_transform=true, "
                             "or output='affine'); without it there is nothing to compute")
        self.global_source = global_source
        channels = list(channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 entries (one downsampling); got {channels}")
        self.multiple = 2 ** (len(channels) - 1)

        self.seam_prior = bool(seam_prior)
        self.seam_gain = self.seam_prior and bool(seam_gain)
        if not 0.0 <= seam_gap < 0.25:
            raise ValueError(f"seam_gap is a fraction of the image side in [0, 0.25); got {seam_gap}")
        self.seam_gap = float(seam_gap)
        if seam_shrinkage not in SHRINKAGES:
            raise ValueError(f"seam_shrinkage must be one of {SHRINKAGES}; got {seam_shrinkage!r}")
        self.seam_shrinkage = seam_shrinkage
        if not 0.0 <= seam_cg <= 8.0:
            raise ValueError(f"seam_cg is CG iterations per px of the longer side, in [0, 8]; got {seam_cg}")
        self.seam_cg = float(seam_cg)
        self.stem = Conv2d(7 if self.seam_prior else 4, channels[0], 3)
        self.down = nn.ModuleList(DownBlock(channels[i], channels[i + 1]) for i in range(len(channels) - 1))
        self.bottleneck = nn.Sequential(*(FFCResBlock(channels[-1], ffc_global_ratio) for _ in range(num_ffc_blocks)))
        # Global code: pooled over the whole image and over the background alone, so the code
        # carries the background's colour/texture statistics that the edit must match.
        if boundary_stats not in (True, False, "mean"):
            raise ValueError(f"boundary_stats must be true, false or 'mean'; got {boundary_stats!r}")
        self.boundary_stats = boundary_stats
        ring_features = RING_MEAN_FEATURES if boundary_stats == "mean" else RING_FEATURES if boundary_stats else 0
        self.global_mlp = nn.Sequential(
            nn.Linear(2 * channels[-1] + ring_features, style_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(style_dim, style_dim),
        )
        self.global_blocks = nn.ModuleList()
        self.spatial_blocks = nn.ModuleList()
        for i in reversed(range(len(channels) - 1)):
            in_ch, out_ch = channels[i + 1], channels[i]
            self.global_blocks.append(GlobalModulationBlock(in_ch, out_ch, skip_ch=channels[i], style_dim=style_dim))
            self.spatial_blocks.append(SpatialModulationBlock(out_ch, skip_ch=channels[i], style_dim=style_dim))
        self.to_rgb = Conv2d(channels[0], (12 if output == "affine" else 3) + int(self.seam_gain), 1)
        nn.init.zeros_(self.to_rgb.weight)  # identity at init
        nn.init.zeros_(self.to_rgb.bias)
        if self.global_transform and global_source == "rings":  # boundary colour statistics only, not the code
            self.global_rings = nn.Sequential(nn.Linear(RING_FEATURES, 64), nn.LeakyReLU(0.2))
        if self.global_transform:
            self.global_affine = nn.Linear(64 if global_source == "rings" else style_dim, 12)
            nn.init.zeros_(self.global_affine.weight)
            nn.init.zeros_(self.global_affine.bias)
        # "where": one sigmoid per image on the head's correction Δ (not on the prior), which a loss can
        # supervise with the simulation's label "this edit has a colour cast" (docs/learning_diagnostics.md, "Where not to correct")
        self.cast_gate = nn.Linear(style_dim, 1) if cast_gate else None

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """An export's config from before an option existed keeps the behaviour it was trained with."""
        if config.get("seam_prior") and "seam_shrinkage" not in config:
            config = {**config, "seam_shrinkage": "wiener"}
        if config.get("seam_prior") and "seam_cg" not in config:
            config = {**config, "seam_cg": 0.0}
        return config

    def forward(self, x_gen: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.forward_parts(x_gen, mask).image

    def forward_parts(self, x_gen: torch.Tensor, mask: torch.Tensor) -> "RefinerParts":
        """The refined image, the seam offset (with ``seam_prior``), the scale applied to it (``1 + g``,
        N×1×H×W, with ``seam_gain``: what ``SeamScaleLoss`` supervises) and the head's correction Δ
        (``evaluation.head_activity`` reads it). One forward either way."""
        check_image_and_mask(x_gen, mask)
        h0, w0 = x_gen.shape[-2:]
        image, pad = pad_to_multiple(x_gen, self.multiple, mode="replicate")
        m, _ = pad_to_multiple(mask.to(x_gen.dtype), self.multiple, mode="constant")

        inputs = [image * 2.0 - 1.0, m]
        if self.seam_prior:
            with torch.no_grad():  # a fixed function of the input, like the mask
                gap = max(1, round(self.seam_gap * min(h0, w0)))
                offset = seam_offset(image.detach(), m, iterations=cg_iterations(self.seam_cg, h0, w0), gap=gap,
                                     shrinkage=self.seam_shrinkage)
            inputs.append(2.0 * offset)
        x = lrelu(self.stem(torch.cat(inputs, dim=1)))
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(x)
        x = self.bottleneck(x)

        m_low = F.adaptive_avg_pool2d(m, x.shape[-2:])
        bg = (1.0 - m_low).to(x.dtype)
        bg_mean = (x * bg).sum(dim=(2, 3)) / bg.sum(dim=(2, 3)).clamp_min(1.0)
        code = [x.mean(dim=(2, 3)), bg_mean]
        ring = None  # all RING_FEATURES statistics: the code may take a subset, the rings source takes them all
        if self.boundary_stats or (self.global_transform and self.global_source == "rings"):
            ring = ring_statistics(image, m).to(x.dtype)
        if self.boundary_stats:  # "mean": colour only, the stds also see texture differences
            code.append(ring[:, [0, 1, 2, 6, 7, 8, 12]] if self.boundary_stats == "mean" else ring)
        style = self.global_mlp(torch.cat(code, dim=1))

        for gblock, sblock, skip in zip(self.global_blocks, self.spatial_blocks, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = gblock(x, skip, style)
            x = sblock(x, skip, style)

        head = self.to_rgb(x).to(image.dtype)
        prior, scale = 0.0, None
        if self.seam_gain:  # per-pixel gain on the offset, 1 at init
            scale = 1.0 + head[:, -1:]
            prior = scale * offset.to(image.dtype)
            head = head[:, :-1]
        elif self.seam_prior:
            prior = offset.to(image.dtype)
        if self.output == "affine":  # Δ = M·x + b per pixel; all zero at init
            n, _, h, w = head.shape
            matrix, bias = head[:, :9].view(n, 3, 3, h, w), head[:, 9:]
            delta = torch.einsum("nijhw,njhw->nihw", matrix, image) + 0.5 * bias
        else:
            delta = 0.5 * head  # network works in [-1, 1]; the residual is in [0, 1] units
        if self.global_transform:  # plus mask·(M_g·x + b_g), one transform per image; zero at init
            source = self.global_rings(ring) if self.global_source == "rings" else style
            g = self.global_scale * self.global_affine(source).to(image.dtype)
            edit = torch.einsum("nij,njhw->nihw", g[:, :9].view(image.shape[0], 3, 3), image) + 0.5 * g[:, 9:, None, None]
            delta = delta + m.to(image.dtype) * edit
        gate_logit = None
        if self.cast_gate is not None:
            gate_logit = self.cast_gate(style).to(image.dtype)  # N×1
            delta = torch.sigmoid(gate_logit)[:, :, None, None] * delta
        out = (image + prior + delta).clamp(0.0, 1.0)
        crop = lambda t: None if t is None else t[..., pad[2] : pad[2] + h0, pad[0] : pad[0] + w0]  # noqa: E731
        offset = offset.to(image.dtype) if self.seam_prior else None
        return RefinerParts(crop(out), crop(offset), crop(scale), crop(delta), gate_logit)
