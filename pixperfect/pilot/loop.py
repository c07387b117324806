"""The PILOT method, shared by the SD1.x/2.x and SDXL pipelines.

diffusers' own ``__call__`` runs without gradients, so the denoising loop is ours: DDIM + CFG;
during the optimisation stage (``t ≥ T(1−γ)``, every ``op_interval`` steps) the latent takes
``num_gradient_steps`` momentum-SGD steps on ``w_bg·L_bg + λ(t)·L_sc`` through one conditional UNet
forward; afterwards the blend stage replaces the background latent with the noised input
latent at every step. Every conditioning the model has — added SDXL time/text embeddings, a
ControlNet, a T2I-Adapter, IP-Adapter image tokens, LoRA weights — goes through the one
``_unet`` call used by both passes, so the gradient sees exactly what sampling sees.
Mask convention: 1 = region to generate (diffusers'). Subclasses provide ``encode_prompt``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.loaders import IPAdapterMixin
from diffusers.models.embeddings import ImageProjection
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from PIL import Image

from pixperfect.pilot.attention import PilotAttention, install, semantic_centralization_terms
from pixperfect.utils import pad_to_multiple

logger = logging.getLogger(__name__)


def to_tensor(image, channels: int) -> torch.Tensor:
    """PIL / numpy HWC in [0,255] or [0,1] / torch N×C×H×W in [0,1] → float N×C×H×W in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
    if isinstance(image, np.ndarray):
        arr = image.astype(np.float32)
        if arr.max() > 1.0:
            arr = arr / 255.0
        t = torch.from_numpy(arr)
        t = t[..., None] if t.ndim == 2 else t
        return t.permute(2, 0, 1)[None]
    if torch.is_tensor(image):
        t = image.float()
        return t[None] if t.ndim == 3 else t[None, None] if t.ndim == 2 else t
    raise TypeError(f"expected a PIL image, numpy array or torch tensor; got {type(image).__name__}")


def prompt_token_mask(tokenizer, ids: torch.Tensor) -> torch.Tensor:
    """True where ``ids`` holds a prompt word: not BOS/EOS/padding; row 0 (unconditional) is all False."""
    tokens = torch.ones_like(ids, dtype=torch.bool)
    for s in {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}:
        if s is not None:
            tokens &= ids != s
    tokens[0] = False
    return tokens


def check_prompt_length(tokenizer, prompt: str) -> None:
    n_tokens = len(tokenizer(prompt).input_ids)
    if n_tokens > tokenizer.model_max_length:
        raise ValueError(f"prompt is {n_tokens} tokens long; this tokenizer takes at most {tokenizer.model_max_length}")


COEF_SCHEDULES = ("linear", "constant")
OUTPUT_TYPES = ("pil", "np", "pt")


def check_settings(settings: dict, names: dict | None = None) -> None:
    """Refuse impossible PILOT settings (any subset of ``__call__``'s keywords) with one clear line,
    before any model work — shared by the pipeline, its CLI and ``evaluation.generate``.
    ``names`` maps a keyword to what the caller calls it (a CLI flag, a config key)."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    rules = {
        "num_inference_steps": (lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
        "num_gradient_steps": (lambda v: is_int(v) and v >= 0, "an integer ≥ 0"),
        "op_interval": (lambda v: is_int(v) and v >= 1, "an integer ≥ 1"),
        "gamma": (lambda v: isinstance(v, (int, float)) and 0.0 <= v <= 1.0, "in [0, 1]"),
        "lr": (lambda v: isinstance(v, (int, float)) and v >= 0, "≥ 0"),
        "momentum": (lambda v: isinstance(v, (int, float)) and 0.0 <= v < 1.0, "in [0, 1)"),
        "coef": (lambda v: isinstance(v, (int, float)) and v >= 0, "≥ 0"),
        "bg_weight": (lambda v: isinstance(v, (int, float)) and v >= 0, "≥ 0"),
        "coef_schedule": (lambda v: v in COEF_SCHEDULES, f"one of {COEF_SCHEDULES}"),
        "output_type": (lambda v: v in OUTPUT_TYPES, f"one of {OUTPUT_TYPES}"),
        "attention_levels": (lambda v: v is None or (isinstance(v, Sequence) and not isinstance(v, str)
                                                     and len(v) > 0 and all(is_int(k) for k in v)),
                             "null or a non-empty list of integers (negative counts from the lowest resolution)"),
    }
    for key, (ok, expected) in rules.items():
        if key in settings and not ok(settings[key]):
            raise ValueError(f"{(names or {}).get(key, key)} must be {expected}; got {settings[key]!r}")


def _rows(value, rows: slice):
    return [_rows(v, rows) for v in value] if isinstance(value, list) else value[rows]


@dataclass
class PromptConditioning:
    """Everything the UNet is conditioned on, batch rows [unconditional, conditional].

    embeds: 2×T×D token embeddings; tokens: 2×T bool, prompt words; added: the UNet's
    ``added_cond_kwargs`` (SDXL ``text_embeds``/``time_ids``, IP-Adapter ``image_embeds``).
    """

    embeds: torch.Tensor
    tokens: torch.Tensor
    added: dict = field(default_factory=dict)

    def rows(self, n: int) -> tuple[torch.Tensor, dict | None]:
        """(embeds, added_cond_kwargs) for a latent batch of ``n``: both rows (CFG) or the conditional one."""
        rows = slice(None) if n == 2 else slice(1, 2)
        added = {k: _rows(v, rows) for k, v in self.added.items()}
        return self.embeds[rows], (added or None)


def as_ddim(scheduler) -> DDIMScheduler:
    """PILOT is defined on DDIM: any other scheduler (SDXL ships Euler) becomes a DDIM scheduler
    with the same training schedule (betas, prediction type, timestep spacing) via ``from_config``."""
    if isinstance(scheduler, DDIMScheduler):
        return scheduler
    logger.info("PILOT: using DDIMScheduler.from_config(%s.config)", type(scheduler).__name__)
    return DDIMScheduler.from_config(scheduler.config)


class PilotLoop(DiffusionPipeline, IPAdapterMixin):
    """The PILOT denoising loop; a subclass registers the models (the scheduler through
    ``as_ddim``) and implements ``encode_prompt``."""

    _optional_components = ["controlnet", "adapter", "image_encoder", "feature_extractor"]

    def encode_prompt(self, prompt: str, negative_prompt: str | None, device, size: tuple[int, int] | None = None
                      ) -> PromptConditioning:
        raise NotImplementedError(f"{type(self).__name__} must implement encode_prompt (see PilotPipeline)")

    # ------------------------------------------------------------------ helpers
    def _check_inputs(self, image: torch.Tensor, mask: torch.Tensor) -> None:
        if image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"mask_image {tuple(mask.shape[-2:])} does not match image {tuple(image.shape[-2:])} "
                             "(H×W); they must be the same size")
        if image.shape[1] != 3:
            raise ValueError(f"image must be RGB; got {image.shape[1]} channels")
        if not bool((mask > 0.5).any()):
            raise ValueError("mask_image is empty: nothing to inpaint (1/white = region to generate)")

    def attention_levels(self, levels: Sequence[int] | None) -> list[int]:
        """Resolution levels L_sc reads (level k = latent size / 2^k; negative k counts from the lowest
        resolution, -1 = the coarsest). Default, as the authors' code (SD1.5 layers 2–12 of 16):
        every level but the full-latent-resolution one."""
        n = len(self.unet.config.block_out_channels)
        if levels is None:
            return list(range(1, n)) if n > 1 else [0]
        return sorted({k + n if k < 0 else k for k in levels if -n <= k < n})

    def attention_sizes(self, latent_hw: tuple[int, int], levels: Sequence[int] | None) -> set[int]:
        """Flattened sizes (h·w) of the cross-attention layers used by L_sc (see ``attention_levels``)."""
        h, w = latent_hw
        return {(-(-h // 2**k)) * (-(-w // 2**k)) for k in self.attention_levels(levels)}

    @property
    def has_ip_adapter(self) -> bool:
        return getattr(self.unet, "encoder_hid_proj", None) is not None and \
            self.unet.config.encoder_hid_dim_type == "ip_image_proj"

    def encode_ip_adapter_image(self, ip_adapter_image, device) -> list[torch.Tensor]:
        """Image-prompt embeddings per loaded IP-Adapter, rows [unconditional, conditional] as
        diffusers builds them (zero embeds, or the hidden states of a black image, for "Plus")."""
        if self.image_encoder is None or self.feature_extractor is None:
            raise ValueError("ip_adapter_image needs an image_encoder and a feature_extractor in the pipeline")
        layers = self.unet.encoder_hid_proj.image_projection_layers
        images = ip_adapter_image if isinstance(ip_adapter_image, list) else [ip_adapter_image] * len(layers)
        if len(images) != len(layers):
            raise ValueError(f"got {len(images)} ip_adapter_image for {len(layers)} loaded IP-Adapters")
        embeds = []
        with torch.no_grad():
            for img, layer in zip(images, layers, strict=True):
                if torch.is_tensor(img):  # the CLIP processor expects 0–255 images
                    arr = (to_tensor(img, 3)[:1].permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
                    img = Image.fromarray(arr[0])
                pixels = self.feature_extractor(img, return_tensors="pt").pixel_values
                pixels = pixels[:1].to(device=device, dtype=self.image_encoder.dtype)
                if isinstance(layer, ImageProjection):
                    pos = self.image_encoder(pixels).image_embeds
                    neg = torch.zeros_like(pos)
                else:
                    pos = self.image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
                    neg = self.image_encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
                embeds.append(torch.cat([neg, pos])[:, None])
        return embeds

    def _unet(self, latents, t, cond: PromptConditioning, control=None, adapter_state=None):
        """One UNet forward (CFG batch of 2 or the conditional row alone) with everything attached:
        added embeddings, ControlNet residuals, T2I-Adapter features; identical in both passes."""
        embeds, added = cond.rows(latents.shape[0])
        kwargs = {"added_cond_kwargs": added} if added else {}
        if self.controlnet is not None and control is not None:
            image, scale = control
            image = image.expand(latents.shape[0], -1, -1, -1).to(latents.dtype)
            down, mid = self.controlnet(latents, t, encoder_hidden_states=embeds, controlnet_cond=image,
                                        conditioning_scale=scale, return_dict=False, **kwargs)
            kwargs.update(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        if adapter_state is not None:  # a fresh list each call: the UNet consumes it
            kwargs["down_intrablock_additional_residuals"] = [
                s.expand(latents.shape[0], -1, -1, -1).to(latents.dtype) for s in adapter_state]
        return self.unet(latents, t, encoder_hidden_states=embeds, **kwargs).sample

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        prompt: str,
        image,
        mask_image,
        negative_prompt: str | None = None,
        num_inference_steps: int = 200,
        guidance_scale: float = 7.5,
        gamma: float = 1.0,
        op_interval: int = 10,
        num_gradient_steps: int = 10,
        lr: float = 0.05,
        momentum: float = 0.7,
        coef: float = 1.0,
        coef_schedule: str = "linear",
        bg_weight: float = 1.0,
        sbc: bool = True,
        attention_levels: Sequence[int] | None = None,
        gradient_checkpointing: bool = False,
        paste_back: bool = False,
        control_image=None,
        control_annotator: Callable | None = None,
        controlnet_conditioning_scale: float = 1.0,
        adapter_image=None,
        adapter_conditioning_scale: float = 1.0,
        ip_adapter_image=None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable | None = None,
    ):
        """Inpaint ``mask_image`` (1/white = generate) of ``image`` with ``prompt``.

        gamma: share of the trajectory (from t = T) that is optimised; ``op_interval`` τ and
        ``num_gradient_steps`` K set how often and how much; ``lr``/``momentum`` the SGD;
        ``coef`` the λ(t) scale of L_sc (``coef_schedule`` linear in t or constant; 0 = no L_sc);
        ``bg_weight`` the weight of L_bg (0 = no L_bg, the ablation); ``sbc`` Semantic Boundary
        Control; ``attention_levels`` the UNet resolution levels L_sc reads (see
        ``attention_levels``); ``gradient_checkpointing`` trades a second UNet forward for
        activation memory in the gradient pass.
        """
        check_settings(dict(num_inference_steps=num_inference_steps, num_gradient_steps=num_gradient_steps,
                            op_interval=op_interval, gamma=gamma, lr=lr, momentum=momentum, coef=coef,
                            bg_weight=bg_weight, coef_schedule=coef_schedule, output_type=output_type,
                            attention_levels=attention_levels))  # all before the run, not after it
        device = self._execution_device
        self.unet.requires_grad_(False)  # frozen (LoRA included): gradients go to the latent only
        if self.controlnet is not None:
            self.controlnet.requires_grad_(False)
        image_t = to_tensor(image, 3).to(device)
        mask_t = (to_tensor(mask_image, 1).to(device) > 0.5).float()
        self._check_inputs(image_t, mask_t)
        # any H×W: pad (replicate; padded pixels count as background) to the UNet's multiple, crop at the end
        h0, w0 = image_t.shape[-2:]
        multiple = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        image_t, pad = pad_to_multiple(image_t, multiple, mode="replicate")
        mask_t, _ = pad_to_multiple(mask_t, multiple, mode="constant")
        cond = self.encode_prompt(prompt, negative_prompt, device, size=tuple(image_t.shape[-2:]))
        if self.has_ip_adapter:
            if ip_adapter_image is None:
                raise ValueError("this pipeline has an IP-Adapter loaded; pass ip_adapter_image (or unload_ip_adapter())")
            cond.added["image_embeds"] = self.encode_ip_adapter_image(ip_adapter_image, device)
        elif ip_adapter_image is not None:
            raise ValueError("ip_adapter_image given but no IP-Adapter is loaded (pipe.load_ip_adapter(...))")

        def conditioning(img, name: str) -> torch.Tensor:
            """A ControlNet/T2I map at the padded size; the original's map outside the mask when an
            annotator is given (the composite control image)."""
            c = to_tensor(img, 3).to(device)
            if c.shape[-2:] != (h0, w0):
                raise ValueError(f"{name} {tuple(c.shape[-2:])} does not match image {(h0, w0)} (H×W)")
            c, _ = pad_to_multiple(c, multiple, mode="replicate")
            if control_annotator is not None:
                c = mask_t * c + (1 - mask_t) * control_annotator(image_t)
            return c

        control = None
        if control_image is not None:
            if self.controlnet is None:
                raise ValueError("control_image given but this pipeline has no controlnet")
            control = (conditioning(control_image, "control_image"), controlnet_conditioning_scale)
        adapter_state = None
        if adapter_image is not None:
            if self.adapter is None:
                raise ValueError("adapter_image given but this pipeline has no adapter")
            a = conditioning(adapter_image, "adapter_image")
            with torch.no_grad():
                adapter_state = [f * adapter_conditioning_scale for f in self.adapter(a.to(self.adapter.dtype))]

        if self.vae.dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False):
            self.vae.to(torch.float32)  # the SDXL VAE overflows in float16 (diffusers upcasts it the same way)
        vae_dtype = self.vae.dtype
        with torch.no_grad():
            z_input = self.vae.encode((image_t * 2 - 1).to(vae_dtype)).latent_dist.mode().float()
        z_input = z_input * self.vae.config.scaling_factor
        lh, lw = z_input.shape[-2:]
        m = (F.interpolate(mask_t, size=(lh, lw), mode="area") > 0.0).float()  # any generated pixel → generate
        bg = 1.0 - m
        bg_area = float(bg.mean())

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        big_t = self.scheduler.config.num_train_timesteps
        latents = torch.randn(z_input.shape, generator=generator, device=device, dtype=torch.float32)
        latents = latents * self.scheduler.init_noise_sigma
        bg_noise = torch.randn(z_input.shape, generator=generator, device=device, dtype=torch.float32)

        state = PilotAttention(mask=m, prompt_tokens=cond.tokens, sbc=sbc)
        previous = install(self.unet, state)
        unet_dtype = self.unet.dtype
        self._last_losses: list[dict] = []
        try:
            with self.progress_bar(total=len(timesteps)) as bar:
                for i, t in enumerate(timesteps):
                    in_opt_stage = float(t) >= big_t * (1.0 - gamma) and gamma > 0
                    if in_opt_stage and i % op_interval == 0 and num_gradient_steps > 0:
                        lam = coef * bg_area * (float(t) / big_t if coef_schedule == "linear" else 1.0)
                        latents = self._optimise(latents, t, cond, state, z_input, bg, lam, num_gradient_steps, lr,
                                                 momentum, (lh, lw), attention_levels, control, adapter_state,
                                                 gradient_checkpointing, bg_weight)
                    with torch.no_grad():
                        state.prompt_tokens, state.mask = cond.tokens, m
                        eps = self._unet(torch.cat([latents] * 2).to(unet_dtype), t, cond, control,
                                         adapter_state).float()
                        eps_u, eps_c = eps.chunk(2)
                        eps = eps_u + guidance_scale * (eps_c - eps_u)
                        latents = self.scheduler.step(eps, t, latents).prev_sample.float()
                        if not in_opt_stage:  # blend stage: keep the (noised) input background
                            prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
                            ref = z_input if prev is None else self.scheduler.add_noise(z_input, bg_noise, prev[None])
                            latents = m * latents + bg * ref
                    if callback_on_step_end is not None:
                        update = callback_on_step_end(self, i, t, {"latents": latents})
                        latents = (update or {}).get("latents", latents)
                    bar.update()
        finally:
            self.unet.set_attn_processor(previous)

        with torch.no_grad():
            out = self.vae.decode((latents / self.vae.config.scaling_factor).to(vae_dtype)).sample.float()
        out = ((out + 1) / 2).clamp(0, 1)
        if paste_back:
            out = mask_t * out + (1 - mask_t) * image_t
        out = out[..., pad[2]: pad[2] + h0, pad[0]: pad[0] + w0]
        if output_type == "pt":
            images = out
        elif output_type == "np":
            images = out.permute(0, 2, 3, 1).cpu().numpy()
        else:
            arr = (out.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
            images = [Image.fromarray(a) for a in arr]
        return ImagePipelineOutput(images=images)

    def predict_x0(self, z: torch.Tensor, out: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """One-step clean-latent prediction from the UNet output, for the scheduler's prediction type
        (epsilon: SD1.x/SDXL; v_prediction: SD2.x 768-v; sample)."""
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            return (z - (1 - alpha).sqrt() * out) / alpha.sqrt()
        if kind == "v_prediction":
            return alpha.sqrt() * z - (1 - alpha).sqrt() * out
        if kind == "sample":
            return out
        raise ValueError(f"unsupported scheduler prediction_type {kind!r}")

    def _optimise(self, latents, t, cond, state, z_input, bg, lam, steps, lr, momentum, latent_hw, levels,
                  control=None, adapter_state=None, checkpointing=False, bg_weight=1.0):
        """Momentum SGD on the fp32 latent; the UNet stays frozen; one conditional forward per step."""
        alpha = self.scheduler.alphas_cumprod.to(latents.device)[int(t)].float()
        velocity = torch.zeros_like(latents)
        z = latents.detach().float()
        cond_tokens = cond.tokens[1:]
        models = [mdl for mdl in (self.unet, self.controlnet) if mdl is not None]
        if checkpointing:
            for mdl in models:
                mdl.enable_gradient_checkpointing()
        try:
            for _ in range(steps):
                z = z.detach().requires_grad_(True)
                state.prompt_tokens, state.captured = cond_tokens, []
                state.capture_sizes = self.attention_sizes(latent_hw, levels)
                with torch.enable_grad():
                    out = self._unet(z.to(self.unet.dtype), t, cond, control, adapter_state).float()
                    x0 = self.predict_x0(z, out, alpha)
                    l_bg = ((x0 - z_input).square() * bg).sum() / (bg.sum() * z.shape[1]).clamp_min(1.0)
                    zero = x0.new_zeros(())
                    sc_bg, sc_fg = semantic_centralization_terms(state.captured, cond_tokens) if lam > 0 else (zero, zero)
                    l_sc = sc_bg - sc_fg  # L_sc on the pre-SBC maps (attention.py)
                    loss = bg_weight * l_bg + lam * l_sc
                    state.capture_sizes = set()  # a checkpointed block re-runs in backward: capture nothing then
                    (grad,) = torch.autograd.grad(loss, z)
                self._last_losses.append({"t": int(t), "l_bg": float(l_bg.detach()), "l_sc": float(l_sc.detach()),
                                          "sc_bg": float(sc_bg.detach()), "sc_fg": float(sc_fg.detach()),
                                          "grad_norm": float(grad.norm())})
                velocity = momentum * velocity - lr * grad
                z = z.detach() + velocity
        finally:
            if checkpointing:
                for mdl in models:
                    mdl.disable_gradient_checkpointing()
            state.capture_sizes, state.captured = set(), []
        return z.detach()
