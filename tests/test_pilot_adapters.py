"""PILOT with SDXL, IP-Adapter, LoRA and gradient checkpointing, on tiny random models (no network).

"Included in the gradient pass" is tested through the first recorded L_bg: it is computed at
step 0 from the same initial latent, so it differs between two runs only if the UNet used by
the gradient pass differs.
"""

import pytest
import torch

from pixperfect.pilot import PilotPipeline, PilotXLPipeline
from tiny_diffusers import pilot_inputs, run_pilot, tiny_image_encoder, tiny_ip_adapter_state_dict, tiny_lora, tiny_sd_components, \
    tiny_sdxl_components

PROMPT = "a photo of a cat"
run = run_pilot


@pytest.fixture
def inputs():
    return pilot_inputs()


def first_l_bg(pipe):
    return pipe._last_losses[0]["l_bg"]


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------- SDXL
@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    return quiet(PilotXLPipeline(**tiny_sdxl_components(tmp_path_factory.mktemp("sdxl"))))


def test_sdxl_shapes_and_background_loss_falls(xl, inputs):
    out = run(xl, inputs, num_gradient_steps=5, coef=0.0)
    assert out.shape == (1, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    first = [r["l_bg"] for r in xl._last_losses[:5]]
    assert first[-1] < first[0]
    odd = run(xl, (torch.rand(1, 3, 30, 37), torch.ones(1, 1, 30, 37)), num_gradient_steps=1)
    assert odd.shape == (1, 3, 30, 37)


def test_sdxl_scheduler_becomes_ddim_with_the_same_schedule(tmp_path):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    parts = tiny_sdxl_components(tmp_path)
    assert isinstance(parts["scheduler"], EulerDiscreteScheduler)
    pipe = PilotXLPipeline(**parts)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert torch.equal(pipe.scheduler.alphas_cumprod, parts["scheduler"].alphas_cumprod)


def test_sdxl_conditioning_is_two_encoders_pooled_and_time_ids(xl):
    cond = xl.encode_prompt(PROMPT, None, "cpu", size=(64, 48))
    assert cond.embeds.shape == (2, 16, 16)  # 8 + 8 channels from the two encoders
    assert torch.equal(cond.embeds[0], torch.zeros_like(cond.embeds[0]))  # force_zeros_for_empty_prompt
    assert cond.added["text_embeds"].shape == (2, 8)
    assert cond.added["time_ids"][1].tolist() == [64, 48, 0, 0, 64, 48]
    assert cond.tokens[1].sum() == 5 and not cond.tokens[0].any()
    # the added conditioning reaches the UNet: other time ids give another output
    e, added = cond.rows(1)
    z = torch.randn(1, 4, 8, 8)
    other = dict(added, time_ids=added["time_ids"] * 0)
    with torch.no_grad():
        a = xl.unet(z, 500, encoder_hidden_states=e, added_cond_kwargs=added).sample
        b = xl.unet(z, 500, encoder_hidden_states=e, added_cond_kwargs=other).sample
    assert not torch.allclose(a, b)


def test_sdxl_save_load_round_trip(xl, inputs, tmp_path):
    xl.save_pretrained(tmp_path / "xl")
    again = quiet(PilotXLPipeline.from_pretrained(tmp_path / "xl"))
    assert torch.allclose(run(xl, inputs), run(again, inputs), atol=1e-6)


def test_sdxl_mismatched_unet_is_a_clear_error(tmp_path, inputs):
    parts = tiny_sdxl_components(tmp_path)
    parts["text_encoder_2"].text_projection = torch.nn.Linear(8, 6, bias=False)  # pooled 6 ≠ the UNet's 8
    with pytest.raises(ValueError, match="added-embedding features"):
        run(PilotXLPipeline(**parts), inputs)


# ---------------------------------------------------------------------------------------------- IP-Adapter
@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return quiet(PilotPipeline(**tiny_sd_components(tmp_path_factory.mktemp("sd"))))


@pytest.fixture(scope="module")
def ip(tmp_path_factory):
    pipe = quiet(PilotPipeline(**tiny_sd_components(tmp_path_factory.mktemp("sd_ip")), **tiny_image_encoder()))
    pipe.load_ip_adapter(tiny_ip_adapter_state_dict(pipe.unet), subfolder="", weight_name="",
                         image_encoder_folder=None)
    return pipe


def test_ip_adapter_changes_the_output_in_both_passes(ip, plain, inputs):
    ref = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    ip.set_ip_adapter_scale(1.0)
    with_ip = run(ip, inputs, ip_adapter_image=ref)
    l_ip = first_l_bg(ip)
    base = run(plain, inputs)
    assert (with_ip - base).abs().max() > 1e-3
    run(ip, inputs, ip_adapter_image=1 - ref)
    assert first_l_bg(ip) != pytest.approx(l_ip, rel=1e-6)  # another image prompt, another gradient-pass loss


def test_set_ip_adapter_scale_keeps_working(ip, plain, inputs):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    ref = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    ip.set_ip_adapter_scale(0.0)
    try:
        off = run(ip, inputs, ip_adapter_image=ref)
    finally:
        ip.set_ip_adapter_scale(1.0)
    assert torch.allclose(off, run(plain, inputs), atol=1e-6)  # scale 0 = no image prompt at all
    # our processors are swapped in only during a call; the IP-Adapter's come back afterwards
    kinds = {type(p).__name__ for p in ip.unet.attn_processors.values()}
    assert IPAdapterAttnProcessor2_0.__name__ in kinds


def test_sbc_keeps_the_image_prompt_out_of_the_background(ip):
    from pixperfect.pilot.attention import PilotAttention, PilotAttnProcessor

    name = next(n for n in ip.unet.attn_processors if n.endswith("attn2.processor"))
    attn = ip.unet.get_submodule(name[: -len(".processor")])
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # top half generated
    proc = PilotAttnProcessor(PilotAttention(mask=mask, sbc=True), ip=ip.unet.attn_processors[name])
    x = torch.randn(1, 16, attn.to_q.in_features)
    text = torch.randn(1, 16, ip.unet.config.cross_attention_dim)
    outs = [proc(attn, x, (text, [torch.randn(1, 4, ip.unet.config.cross_attention_dim)])) for _ in range(2)]
    fg = mask.flatten() > 0.5
    assert torch.equal(outs[0][0, ~fg], outs[1][0, ~fg])  # background: same output whatever the image prompt
    assert not torch.allclose(outs[0][0, fg], outs[1][0, fg])


def test_ip_adapter_errors(ip, plain, inputs):
    with pytest.raises(ValueError, match="pass ip_adapter_image"):
        run(ip, inputs)
    with pytest.raises(ValueError, match="no IP-Adapter is loaded"):
        run(plain, inputs, ip_adapter_image=torch.rand(1, 3, 16, 16))


# ---------------------------------------------------------------------------------------------- LoRA
def test_lora_changes_the_output_in_both_passes_and_weight_0_is_the_base(plain, inputs, tmp_path):
    base = run(plain, inputs)
    base_l = first_l_bg(plain)
    pipe = quiet(PilotPipeline(**tiny_sd_components(tmp_path / "sd")))
    pipe.load_lora_weights(tiny_lora(tmp_path, PilotPipeline), adapter_name="style")
    assert (run(pipe, inputs) - base).abs().max() > 1e-3
    assert first_l_bg(pipe) != pytest.approx(base_l, rel=1e-6)
    pipe.set_adapters(["style"], adapter_weights=[0.0])
    assert torch.allclose(run(pipe, inputs), base, atol=1e-5)


# ---------------------------------------------------------------------------------------------- checkpointing
def test_gradient_checkpointing_gives_the_same_result(plain, inputs, monkeypatch):
    a = run(plain, inputs, coef=5.0)  # coef > 0: L_sc's captured attention must survive the recompute too
    losses = list(plain._last_losses)
    calls, checkpoint = [], torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    b = run(plain, inputs, coef=5.0, gradient_checkpointing=True)
    assert calls  # the UNet blocks really were checkpointed
    assert all(x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4) for x, y in zip(losses, plain._last_losses))
    assert torch.allclose(a, b, atol=1e-5)
    assert not plain.unet.is_gradient_checkpointing


# ---------------------------------------------------------------------------------------------- loading
def test_load_pilot_assembles_lora_and_ip_adapter_from_files(tmp_path, inputs):
    from safetensors.torch import save_file

    from pixperfect.pilot.load import load_pilot, pipeline_class

    parts = tiny_sd_components(tmp_path / "sd")
    PilotPipeline(**parts).save_pretrained(tmp_path / "model")
    lora = tiny_lora(tmp_path, PilotPipeline)
    encoder = tiny_image_encoder()
    weights = tiny_ip_adapter_state_dict(parts["unet"])
    (tmp_path / "ip").mkdir()
    save_file({f"{group}.{k}": v.contiguous() for group, d in weights.items() for k, v in d.items()},
              tmp_path / "ip" / "ip.safetensors")
    encoder["image_encoder"].save_pretrained(tmp_path / "ip" / "image_encoder")

    assert pipeline_class(tmp_path / "model") is PilotPipeline
    loaded = quiet(load_pilot(tmp_path / "model", device="cpu", lora=str(lora), lora_scale=0.5,
                              ip_adapter=str(tmp_path / "ip" / "ip.safetensors"), ip_adapter_scale=0.7))
    by_hand = quiet(PilotPipeline(**tiny_sd_components(tmp_path / "sd2"), **encoder))
    by_hand.load_lora_weights(lora, adapter_name="lora")
    by_hand.set_adapters(["lora"], adapter_weights=[0.5])
    by_hand.load_ip_adapter(weights, subfolder="", weight_name="", image_encoder_folder=None)
    by_hand.set_ip_adapter_scale(0.7)
    ref = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(run(loaded, inputs, ip_adapter_image=ref), run(by_hand, inputs, ip_adapter_image=ref),
                          atol=1e-5)


def test_load_pilot_names_what_it_could_not_load(tmp_path):
    from pixperfect.pilot.load import load_pilot

    PilotPipeline(**tiny_sd_components(tmp_path / "sd")).save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="cannot read a diffusers pipeline at .*nope"):
        load_pilot(tmp_path / "nope", device="cpu")
    with pytest.raises(ValueError, match="cannot load a ControlNet from .*no_cn"):
        load_pilot(tmp_path / "model", device="cpu", controlnet=str(tmp_path / "no_cn"))
    with pytest.raises(ValueError, match="cannot load LoRA weights from .*no_lora"):
        load_pilot(tmp_path / "model", device="cpu", lora=str(tmp_path / "no_lora"))
    with pytest.raises(ValueError, match="is not a file"):
        load_pilot(tmp_path / "model", device="cpu", ip_adapter=str(tmp_path / "no_ip"))
    with pytest.raises(ValueError, match="dtype must be"):
        load_pilot(tmp_path / "model", device="cpu", dtype="float8")


def test_cli_picks_the_sdxl_class(xl, tmp_path, cbsd68_photos):
    import numpy as np
    from PIL import Image

    from pixperfect.pilot.__main__ import main as pilot_main
    from pixperfect.pilot.load import pipeline_class

    xl.save_pretrained(tmp_path / "xl")
    assert pipeline_class(tmp_path / "xl") is PilotXLPipeline
    Image.open(cbsd68_photos[1]).convert("RGB").crop((0, 0, 40, 40)).save(tmp_path / "in.png")
    mask = np.zeros((40, 40), np.uint8)
    mask[5:25, 5:25] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = ["--model", str(tmp_path / "xl"), "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
            "--prompt", "a red house", "--steps", "2", "--op-interval", "1", "--gradient-steps", "1",
            "--out", str(tmp_path / "out.png")]
    assert pilot_main(args) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (40, 40, 3)
    assert pilot_main([*args, "--control-image", str(tmp_path / "in.png")]) == 2  # no --controlnet: clear error
    assert pilot_main([*args, "--lora", str(tmp_path / "missing")]) == 2
