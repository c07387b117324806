"""Distribution metrics (FID, KID) through torchmetrics, with an explicit policy for missing weights.

FID/KID need the Inception-v3 weights that torch-fidelity keeps in the torch hub cache. Nothing
can be downloaded here, so availability is checked first: without the weights the metric reports
``None`` and a one-line reason instead of stalling on a download or crashing. Tests inject a small
feature extractor (any ``nn.Module`` mapping N×3×H×W to N×D), which torchmetrics supports natively.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


def inception_weights_path() -> Path:
    """Where torch-fidelity (and so torchmetrics) looks for the FID Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(INCEPTION_URL).name


def inception_unavailable_reason() -> str | None:
    """None when FID/KID can run with the standard Inception; otherwise one line saying why not."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return "torch-fidelity is not installed (pip install torch-fidelity)"
    path = inception_weights_path()
    if not path.is_file():
        return f"Inception weights not in the torch hub cache: put {Path(INCEPTION_URL).name} in {path.parent}"
    return None


class FeatureDistance:
    """Accumulates features of real and generated images; ``compute()`` gives FID and KID from them
    (one feature extraction serves both).

    Args:
        feature: a feature extractor ``nn.Module`` (N×3×H×W float in [0, 1] → N×D); None uses
            torchmetrics' Inception-v3 (2048-d pool features), if its weights are cached.
        kid_subset_size: KID subset size (clipped to the number of samples at compute time).
    """

    def __init__(self, feature: nn.Module | None = None, kid_subset_size: int = 50,
                 device: str | torch.device = "cpu"):
        self.feature = feature
        self.kid_subset_size = kid_subset_size
        self.device = torch.device(device)
        self.reason = None if feature is not None else inception_unavailable_reason()
        self.real: list[torch.Tensor] = []
        self.fake: list[torch.Tensor] = []
        self._extractor = None

    @property
    def available(self) -> bool:
        return self.reason is None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """N×D float64 features of a batch N×3×H×W in [0, 1] (on CPU)."""
        if self._extractor is None:
            if self.feature is not None:
                self._extractor = self.feature.eval().to(self.device)
            else:
                from torchmetrics.image.fid import NoTrainInceptionV3

                self._extractor = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"]).to(self.device)
        with torch.no_grad():
            x = images.to(self.device).float().clamp(0, 1)
            if self.feature is None:  # torch-fidelity's Inception takes uint8 images
                x = (x * 255).round().to(torch.uint8)
            return self._extractor(x).reshape(len(images), -1).double().cpu()

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch (N×3×H×W in [0, 1]); feature extraction is batched."""
        if self.available:
            (self.real if real else self.fake).append(self.features(images))

    def compute(self) -> dict[str, float | None]:
        """``{"fid": …, "kid": …}``; None when unavailable or a side is empty (KID needs ≥ 2 per side)."""
        if not self.available or not self.real or not self.fake:
            return {"fid": None, "kid": None}
        from torchmetrics.image.fid import _compute_fid
        from torchmetrics.image.kid import poly_mmd

        real, fake = torch.cat(self.real), torch.cat(self.fake)
        fid = None
        if len(real) >= 2 and len(fake) >= 2:
            fid = float(_compute_fid(real.mean(0), torch.cov(real.T), fake.mean(0), torch.cov(fake.T)))
        size = min(self.kid_subset_size, len(real), len(fake))
        kid = None
        if size >= 2:
            g = torch.Generator().manual_seed(0)
            kid = float(torch.stack([poly_mmd(real[torch.randperm(len(real), generator=g)[:size]],
                                              fake[torch.randperm(len(fake), generator=g)[:size]])
                                     for _ in range(10)]).mean())
        return {"fid": fid, "kid": kid}
