"""Neural artifact ops, batched on the training device (called from
``LightningModule.on_after_batch_transfer``): the VAE round trip of the edit region.

The CPU pipeline decides, per sample and from the sample's own seed, whether a round trip
happens (the ``vae`` flag in the batch); this object only carries it out, so the draw stays
deterministic and in one place.
"""

from __future__ import annotations

import torch

from simulation.autoencoders import load_autoencoder, roundtrip_any_size


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """``dtype`` on an accelerator, float32 on CPU (half-precision CPU convolutions are slow or missing)."""
    return torch.float32 if torch.device(device).type == "cpu" else dtype


class DeviceSimulation:
    """Args:
        autoencoder: TAESD folder, diffusers VAE folder or hub id (``None``: no neural ops).
        subfolder: e.g. ``vae`` for a hub pipeline id.
        dtype: compute dtype of the autoencoder on an accelerator (``float32`` | ``bfloat16`` | ``float16``).
            On CPU the round trip always runs in float32: CPU half-precision convolutions are
            unsupported for some ops and many times slower than float32 (see ``compute_dtype``).
    """

    def __init__(self, autoencoder: str | None = None, subfolder: str | None = None, dtype: str = "float32",
                 sample_latents: bool = False):
        self.source = autoencoder
        self.model = load_autoencoder(autoencoder, subfolder, sample_latents) if autoencoder else None
        self.dtype = getattr(torch, dtype)
        self.applied = 0  # samples round-tripped so far (logged by the training module)

    @torch.no_grad()
    def __call__(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        flags = batch.get("vae")
        if self.model is None or flags is None or not bool(flags.any()):
            return batch
        x_gen = batch["x_gen"]
        dtype = compute_dtype(self.dtype, x_gen.device)
        param = next(self.model.parameters())
        if param.device != x_gen.device or param.dtype != dtype:  # also when already on the device
            self.model.to(x_gen.device, dtype)
        idx = torch.nonzero(flags.to(torch.bool).view(-1)).squeeze(1)
        x = x_gen[idx]
        alpha = batch.get("alpha", batch["mask"])[idx].to(x.dtype)
        y = roundtrip_any_size(self.model, x.to(dtype), generator).to(x.dtype)
        out = dict(batch)
        out["x_gen"] = x_gen.index_copy(0, idx, alpha * y + (1.0 - alpha) * x)
        self.applied += int(idx.numel())
        return out
