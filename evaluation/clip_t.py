"""CLIP-T: how well a generated image matches its prompt (PILOT's text-alignment metric).

The score is torchmetrics' ``CLIPScore`` formula, ``max(100 · cos(E_image, E_text), 0)``, computed
here with transformers' ``CLIPModel``/``CLIPProcessor`` directly: torchmetrics 1.9's CLIPScore
calls ``.norm()`` on ``get_image_features``' return value, which transformers 5 (pinned) made a
``BaseModelOutputWithPooling`` — it fails on any model. The CLIP model is loaded only from disk: a local folder (``CLIPModel`` + ``CLIPProcessor`` saved with
``save_pretrained``) or a hub id already in the local Hugging Face cache. Nothing is downloaded; when
the model is not there, ``available`` is False and ``reason`` says why in one line, so an
evaluation can report CLIP-T as null instead of failing.
"""

from __future__ import annotations

import os

import torch

DEFAULT_MODEL = "openai/clip-vit-large-patch14"  # torchmetrics' default, the one PILOT's paper family uses


class ClipT:
    """``ClipT(model)(images, prompts)`` → one CLIP-T score per image (N).

    model: a local folder or a hub id in the local HF cache (None: ``openai/clip-vit-large-patch14``).
    images: N×3×H×W float in [0, 1]; prompts: N strings.
    """

    def __init__(self, model: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        self.model_name = str(model) if model is not None else DEFAULT_MODEL
        self.device = torch.device(device)
        self.available = False
        self.reason: str | None = None
        self.model = self.processor = None
        try:
            from transformers import CLIPModel, CLIPProcessor
        except ImportError as exc:  # pragma: no cover - transformers is pinned
            self.reason = f"transformers is not importable ({exc})"
            return
        try:
            clip = CLIPModel.from_pretrained(self.model_name, local_files_only=True).eval()
            processor = CLIPProcessor.from_pretrained(self.model_name, local_files_only=True)
        except (OSError, ValueError) as exc:
            where = "folder" if os.path.isdir(self.model_name) else "local Hugging Face cache"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.reason = f"CLIP model {self.model_name} cannot be loaded from the {where} ({first[:160]})"
            return
        self.model, self.processor = clip.to(self.device), processor
        self.available = True

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        if not self.available:
            raise RuntimeError(f"CLIP-T is unavailable: {self.reason}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be N×3×H×W; got {tuple(images.shape)}")
        if len(prompts) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts")
        if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise ValueError("images must be finite floats in [0, 1]")
        pixels = [im.cpu() * 255.0 for im in images.float()]  # the CLIP processor rescales by 1/255
        inputs = self.processor(images=pixels, return_tensors="pt")
        max_len = self.model.config.text_config.max_position_embeddings
        text = self.processor(text=list(prompts), return_tensors="pt", padding=True, truncation=True, max_length=max_len)
        image_features = self._features(self.model.get_image_features(pixel_values=inputs.pixel_values.to(self.device)))
        text_features = self._features(self.model.get_text_features(input_ids=text.input_ids.to(self.device),
                                                                    attention_mask=text.attention_mask.to(self.device)))
        cosine = torch.nn.functional.cosine_similarity(image_features, text_features, dim=-1)
        return (100 * cosine).clamp_min(0).float().cpu()

    @staticmethod
    def _features(out) -> torch.Tensor:
        """Projected embeddings: a tensor (transformers 4) or an output's ``pooler_output`` (transformers 5)."""
        return out if torch.is_tensor(out) else out.pooler_output
