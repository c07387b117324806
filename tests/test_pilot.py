"""PILOT on a tiny random SD built from configs (tokenizer in code; no network)."""

import pytest
import torch

from pixperfect.pilot import PilotPipeline
from pixperfect.pilot.attention import PilotAttention, semantic_centralization_loss
from tiny_diffusers import pilot_inputs, run_pilot, tiny_sd_components


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    p = PilotPipeline(**tiny_sd_components(tmp_path_factory.mktemp("sd")))
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture
def inputs():
    return pilot_inputs()


run = run_pilot


def bg_error(out, inputs):
    image, mask = inputs
    return float(((out - image).abs() * (1 - mask)).sum() / (3 * (1 - mask).sum()))


def test_output_shape_and_range(pipe, inputs):
    out = run(pipe, inputs)
    assert out.shape == (1, 3, 32, 32) and out.min() >= 0 and out.max() <= 1


def test_any_size_in_same_size_out(pipe):
    image = torch.rand(1, 3, 30, 37)
    mask = torch.zeros(1, 1, 30, 37)
    mask[..., 5:20, 10:30] = 1
    out = run(pipe, (image, mask), paste_back=True)
    assert out.shape == (1, 3, 30, 37)
    assert torch.equal(out[..., :5, :], image[..., :5, :])


def test_l_bg_falls_over_the_inner_steps(pipe, inputs):
    run(pipe, inputs, num_gradient_steps=5, lr=0.05, coef=0.0)
    first = [r["l_bg"] for r in pipe._last_losses[:5]]
    assert first[-1] < first[0]


def test_optimisation_lowers_the_final_background_error(pipe, inputs):
    plain = run(pipe, inputs, num_gradient_steps=0)
    optimised = run(pipe, inputs, num_gradient_steps=5, lr=0.05)
    assert bg_error(optimised, inputs) < bg_error(plain, inputs)


def test_gamma_0_equals_plain_blended_latent_sampling(pipe, inputs):
    image, mask = inputs
    out = run(pipe, inputs, gamma=0.0, sbc=False)
    # reference: blended latent diffusion with the stock attention processors
    from diffusers.models.attention_processor import AttnProcessor

    unet, vae, sched = pipe.unet, pipe.vae, pipe.scheduler
    unet.set_attn_processor(AttnProcessor())
    g = torch.Generator().manual_seed(0)
    embeds = pipe.encode_prompt("a photo of a cat", None, "cpu").embeds
    with torch.no_grad():
        z0 = vae.encode(image * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
        m = (torch.nn.functional.interpolate(mask, size=z0.shape[-2:], mode="area") > 0).float()
        sched.set_timesteps(6)
        z = torch.randn(z0.shape, generator=g) * sched.init_noise_sigma
        noise = torch.randn(z0.shape, generator=g)
        ts = sched.timesteps
        for i, t in enumerate(ts):
            e_u, e_c = unet(torch.cat([z] * 2), t, encoder_hidden_states=embeds).sample.chunk(2)
            z = sched.step(e_u + 3.0 * (e_c - e_u), t, z).prev_sample
            ref = z0 if i + 1 == len(ts) else sched.add_noise(z0, noise, ts[i + 1][None])
            z = m * z + (1 - m) * ref
        expected = ((vae.decode(z / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def attention_pass(pipe, prompts, mask, sbc=True, levels=(0, 1), seed=0):
    """One UNet forward of a latent (requires grad) through PILOT's processors; returns the
    latent, the captured (pre-SBC probabilities, mask) per layer and the conditioning."""
    from pixperfect.pilot.attention import install

    cond = pipe.encode_prompt(prompts[1], prompts[0], "cpu")
    h, w = mask.shape[-2] // pipe.vae_scale_factor, mask.shape[-1] // pipe.vae_scale_factor
    m = (torch.nn.functional.interpolate(mask, size=(h, w), mode="area") > 0).float()
    state = PilotAttention(mask=m, prompt_tokens=cond.tokens, sbc=sbc, capture_sizes=pipe.attention_sizes((h, w), levels))
    previous = install(pipe.unet, state)
    try:
        z = torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
        pipe._unet(z, torch.tensor(700), cond)
    finally:
        pipe.unet.set_attn_processor(previous)
    return z, state.captured, cond


def test_sc_loss_reads_pre_sbc_attention_and_both_terms_carry_gradient(pipe, inputs):
    """Regression: the maps were captured after SBC, so A_bg was exactly 0 and L_sc degenerated to −A_fg."""
    from pixperfect.pilot.attention import semantic_centralization_terms

    z, captured, cond = attention_pass(pipe, ("", "a photo of a cat"), inputs[1], sbc=True)
    assert len(captured) == 4  # tiny UNet: 16×16 layers (1 down, 2 up; level 0) and the 8×8 mid block (level 1)
    bg, fg = semantic_centralization_terms(captured, cond.tokens[1:])
    assert bg.item() > 1e-3 and fg.item() > 1e-3
    for term in (bg, fg):
        (grad,) = torch.autograd.grad(term, z, retain_graph=True)
        assert grad.abs().sum() > 0  # the latent gets a gradient through each term
    run(pipe, inputs, num_inference_steps=2, op_interval=1, num_gradient_steps=2, coef=1.0, sbc=True)  # in the loop
    with_sc = [r for r in pipe._last_losses if r["t"] > 0]  # λ(t) ∝ t: no L_sc at t = 0
    assert with_sc and all(r["sc_bg"] > 1e-3 and r["sc_fg"] > 1e-3 for r in with_sc)


def test_sbc_background_output_is_the_bos_value_alone_whatever_the_prompt(pipe):
    """Post-softmax SBC (the authors' code): a background pixel's cross-attention output is
    to_out(p_BOS · v_BOS) — no other token contributes and nothing is renormalised — in both CFG
    rows; v_BOS is the same for every prompt (CLIP is causal)."""
    from pixperfect.pilot.attention import PilotAttnProcessor

    name = next(n for n in pipe.unet.attn_processors if n.endswith("attn2.processor"))
    attn = pipe.unet.get_submodule(name[: -len(".processor")])  # a 16×16 layer of the tiny UNet
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    proc = PilotAttnProcessor(PilotAttention(mask=mask, sbc=True))
    x = torch.randn(2, 256, attn.to_q.in_features, generator=torch.Generator().manual_seed(3))
    bg = mask.flatten() < 0.5
    heads, outs, v_bos = attn.heads, [], []
    for prompt in ("a photo of a cat", "a red house"):
        text = pipe.encode_prompt(prompt, "blue sky", "cpu").embeds  # rows [negative, prompt]
        with torch.no_grad():
            out = proc(attn, x, text)
            q = attn.to_q(x).view(2, 256, heads, -1).transpose(1, 2)
            k = attn.to_k(text).view(2, -1, heads, q.shape[-1]).transpose(1, 2)
            v = attn.to_v(text).view(2, -1, heads, q.shape[-1]).transpose(1, 2)
            p_bos = ((q @ k.transpose(-1, -2)) * attn.scale).softmax(-1)[..., :1]  # B×H×pixels×1, before SBC
            by_hand = (p_bos * v[:, :, :1]).transpose(1, 2).reshape(2, 256, -1)
            expected = attn.to_out[1](attn.to_out[0](by_hand))
        torch.testing.assert_close(out[:, bg], expected[:, bg], atol=1e-6, rtol=1e-5)
        assert p_bos.min() < 0.99  # not renormalised: p_BOS < 1 is kept as is
        outs.append(out)
        v_bos.append(v[:, :, 0])
    torch.testing.assert_close(v_bos[0], v_bos[1])  # the BOS value does not depend on the prompt
    assert not torch.allclose(outs[0][1, ~bg], outs[1][1, ~bg], atol=1e-4)  # the hole does


def test_sbc_off_leaves_attention_untouched(pipe, inputs):
    from diffusers.models.attention_processor import AttnProcessor

    from pixperfect.pilot.attention import PilotAttnProcessor

    name = next(n for n in pipe.unet.attn_processors if n.endswith("attn2.processor"))
    attn = pipe.unet.get_submodule(name[: -len(".processor")])
    x = torch.randn(2, 256, attn.to_q.in_features, generator=torch.Generator().manual_seed(4))
    text = pipe.encode_prompt("a photo of a cat", None, "cpu").embeds
    ours = PilotAttnProcessor(PilotAttention(mask=inputs[1][..., ::2, ::2], sbc=False))(attn, x, text)
    torch.testing.assert_close(ours, AttnProcessor()(attn, x, text), atol=1e-6, rtol=1e-5)


def test_semantic_centralization_loss_is_bg_minus_fg_mass():
    probs = torch.zeros(1, 1, 4, 3)
    probs[0, 0, :, 1] = torch.tensor([0.9, 0.8, 0.1, 0.2])  # token 1 is the prompt token
    m = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    tokens = torch.tensor([[False, True, False]])
    loss = semantic_centralization_loss([(probs, m)], tokens)
    assert loss.item() == pytest.approx(0.15 - 0.85)
    with pytest.raises(ValueError, match="attention"):
        semantic_centralization_loss([], tokens)


def test_attention_levels_count_from_either_end(pipe):
    assert pipe.attention_levels(None) == [1]  # default: all but the finest (tiny UNet has 2 levels)
    assert pipe.attention_levels([-1]) == [1] and pipe.attention_levels([-2]) == [0]
    assert pipe.attention_levels([0, 1, 2, 3, 4]) == [0, 1]
    assert pipe.attention_sizes((16, 16), [0, -1]) == {256, 64}
    with pytest.raises(ValueError, match="attention_levels must be"):
        run(pipe, pilot_inputs(), attention_levels=[])


def test_no_bg_loss_and_no_sc_loss_leave_the_latent_alone(pipe, inputs):
    short = dict(num_inference_steps=2, op_interval=1, num_gradient_steps=2)
    plain = run(pipe, inputs, **{**short, "num_gradient_steps": 0})
    torch.testing.assert_close(run(pipe, inputs, bg_weight=0.0, coef=0.0, **short), plain)  # nothing to optimise
    only_sc = run(pipe, inputs, bg_weight=0.0, coef=5.0, **short)
    assert not torch.allclose(only_sc, plain, atol=1e-5)
    assert all(r["grad_norm"] > 0 for r in pipe._last_losses if r["t"] > 0)  # L_sc alone still moves the latent


def test_save_and_load_round_trip(pipe, inputs, tmp_path):
    pipe.save_pretrained(tmp_path / "pilot")
    loaded = PilotPipeline.from_pretrained(tmp_path / "pilot")
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(run(loaded, inputs), run(pipe, inputs))


def test_errors(pipe, inputs):
    image, mask = inputs
    with pytest.raises(ValueError, match="does not match"):
        pipe("a cat", image, mask[..., :16], output_type="pt", num_inference_steps=2)
    with pytest.raises(ValueError, match="empty"):
        pipe("a cat", image, torch.zeros_like(mask), output_type="pt", num_inference_steps=2)
    with pytest.raises(ValueError, match="tokens long"):
        pipe(" ".join(["cat"] * 40), image, mask, output_type="pt", num_inference_steps=2)
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match="output_type must be"):
            pipe("a cat", image, mask, output_type="jpg", num_inference_steps=2)
    finally:
        handle.remove()
    assert not calls  # refused before any denoising, not after it


def test_attention_state_resizes_the_mask():
    state = PilotAttention(mask=torch.ones(1, 1, 5, 7))
    assert state.mask_at(35, 2, "cpu", torch.float32).shape == (2, 35)
    assert state.mask_at(3 * 4, 1, "cpu", torch.float32).shape == (1, 12)  # ceil(5/2)·ceil(7/2)
    assert state.mask_at(11, 1, "cpu", torch.float32) is None


def test_cli_on_a_cbsd68_photo(pipe, tmp_path, cbsd68_photos):
    import numpy as np
    from PIL import Image

    from pixperfect.pilot.__main__ import main as pilot_main

    pipe.save_pretrained(tmp_path / "model")
    photo = Image.open(cbsd68_photos[0]).convert("RGB").crop((0, 0, 64, 48))
    photo.save(tmp_path / "in.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = ["--model", str(tmp_path / "model"), "--image", str(tmp_path / "in.png"), "--prompt", "a cat",
              "--steps", "4", "--op-interval", "2", "--gradient-steps", "2", "--paste-back"]
    assert pilot_main([*common, "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (48, 64, 3)
    assert np.array_equal(out[:10], np.asarray(photo)[:10])  # pasted-back background
    Image.fromarray(mask[:20]).save(tmp_path / "small.png")
    assert pilot_main([*common, "--mask", str(tmp_path / "small.png"), "--out", str(tmp_path / "o2.png")]) == 2
    Image.fromarray(np.zeros_like(mask)).save(tmp_path / "empty.png")
    assert pilot_main([*common, "--mask", str(tmp_path / "empty.png"), "--out", str(tmp_path / "o3.png")]) == 2


@pytest.fixture(scope="module")
def control_pipe(pipe):
    from diffusers import ControlNetModel

    torch.manual_seed(1)
    controlnet = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(4, 8))
    for p in controlnet.parameters():  # ControlNet's zero convolutions would make it a no-op: randomise them
        torch.nn.init.normal_(p, std=0.2)
    p = PilotPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                      scheduler=pipe.scheduler, controlnet=controlnet)
    p.set_progress_bar_config(disable=True)
    return p


def test_controlnet_runs_in_both_passes_and_changes_the_output(control_pipe, pipe, inputs):
    image, mask = inputs
    control = torch.zeros(1, 3, 32, 32)
    control[..., 12:20, :] = 1.0  # a bar across the hole
    plain = run(pipe, inputs)
    with_control = run(control_pipe, inputs, control_image=control)
    assert not torch.allclose(plain, with_control, atol=1e-4)
    calls = []
    original = control_pipe.controlnet.forward
    control_pipe.controlnet.forward = lambda *a, **k: calls.append(torch.is_grad_enabled()) or original(*a, **k)
    try:
        run(control_pipe, inputs, control_image=control, num_gradient_steps=2)
    finally:
        del control_pipe.controlnet.forward
    assert True in calls and False in calls  # used with gradients (optimisation) and without (sampling)


def test_controlnet_composite_uses_the_annotator_outside_the_mask(control_pipe, inputs):
    image, mask = inputs
    seen = []

    def annotator(img):
        seen.append(img.shape)
        return torch.zeros_like(img)

    control = torch.ones(1, 3, 32, 32)
    a = run(control_pipe, inputs, control_image=control, control_annotator=annotator)
    b = run(control_pipe, inputs, control_image=control)
    assert seen == [(1, 3, 32, 32)] and not torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="control_image .* does not match"):
        run(control_pipe, inputs, control_image=torch.ones(1, 3, 16, 32))
    with pytest.raises(ValueError, match="no controlnet"):
        run(PilotPipeline(**{k: v for k, v in control_pipe.components.items() if k != "controlnet"}), inputs,
            control_image=control)


def test_controlnet_pipeline_save_load(control_pipe, inputs, tmp_path):
    control = torch.rand(1, 3, 32, 32)
    control_pipe.save_pretrained(tmp_path / "cn")
    loaded = PilotPipeline.from_pretrained(tmp_path / "cn")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.controlnet is not None
    torch.testing.assert_close(run(loaded, inputs, control_image=control), run(control_pipe, inputs, control_image=control))


def test_t2i_adapter_changes_the_output_and_round_trips(pipe, inputs, tmp_path):
    from diffusers import T2IAdapter

    torch.manual_seed(2)
    adapter = T2IAdapter(in_channels=3, channels=[8, 16], num_res_blocks=1, downscale_factor=2,
                         adapter_type="full_adapter")
    p = PilotPipeline(**{k: v for k, v in pipe.components.items() if k not in ("adapter", "controlnet")}, adapter=adapter)
    p.set_progress_bar_config(disable=True)
    sketch = torch.zeros(1, 3, 32, 32)
    sketch[..., :, 14:18] = 1.0
    plain = run(pipe, inputs)
    calls = []
    original = p.unet.forward
    p.unet.forward = lambda *a, **k: calls.append(
        (torch.is_grad_enabled(), "down_intrablock_additional_residuals" in k)) or original(*a, **k)
    try:
        adapted = run(p, inputs, adapter_image=sketch, num_gradient_steps=2)
    finally:
        del p.unet.forward
    assert not torch.allclose(plain, adapted, atol=1e-4)
    assert (True, True) in calls and (False, True) in calls  # features in the gradient and the sampling pass
    p.save_pretrained(tmp_path / "t2i")
    loaded = PilotPipeline.from_pretrained(tmp_path / "t2i")
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(run(loaded, inputs, adapter_image=sketch, num_gradient_steps=2), adapted)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_no_hidden_unet_passes(pipe, inputs, checkpointing):
    """N CFG forwards (batch 2) plus K conditional forwards (batch 1) every τ steps of the optimised
    share γ — exactly, with or without gradient checkpointing (it recomputes blocks, not the UNet)."""
    batches = []
    handle = pipe.unet.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        run(pipe, inputs, num_inference_steps=6, op_interval=2, num_gradient_steps=3, gamma=0.5,
            gradient_checkpointing=checkpointing)
    finally:
        handle.remove()
    timesteps = pipe.scheduler.timesteps
    optimised = [i for i, t in enumerate(timesteps) if float(t) >= 1000 * 0.5 and i % 2 == 0]
    assert batches.count(2) == 6
    assert batches.count(1) == 3 * len(optimised) and len(optimised) > 0
    assert len(batches) == 6 + 3 * len(optimised)


def test_bench_pilot_reports_both_variants():
    from evaluation.bench_pilot import bench_pilot

    rec = bench_pilot(torch.device("cpu"), repeats=0, size="tiny", steps=2, op_interval=1, gradient_steps=2,
                      gamma=0.5)
    assert rec["time_ratio_target"] == 1 + 3 * 0.5 * 2 / 1
    assert rec["time_ratio"] == pytest.approx(rec["ms_pilot"] / rec["ms_optimisation_off"], rel=1e-2)
    assert rec["ms_pilot"] > 0 and rec["peak_mb_pilot"] >= 0


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_x0_prediction_matches_the_scheduler(pipe, kind):
    from diffusers import DDIMScheduler

    original = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(original.config, prediction_type=kind)
    try:
        pipe.scheduler.set_timesteps(10)
        t = pipe.scheduler.timesteps[3]
        z, out = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
        ours = pipe.predict_x0(z, out, pipe.scheduler.alphas_cumprod[int(t)])
        assert torch.allclose(ours, pipe.scheduler.step(out, t, z).pred_original_sample, atol=1e-5)
    finally:
        pipe.scheduler = original


@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--steps", "-3"), ("--gradient-steps", "-1"),
                                        ("--momentum", "1.0"), ("--bg-weight", "-1")])
def test_cli_refuses_impossible_settings_in_one_line(tmp_path, capsys, flag, value):
    """Regression (issue 11): --steps 0 gave a traceback and --steps -3 wrote an image."""
    from pixperfect.pilot.__main__ import main as pilot_main

    out = tmp_path / "out.png"
    args = ["--model", str(tmp_path / "not_loaded"), "--image", "in.png", "--mask", "m.png", "--prompt", "a cat",
            "--out", str(out), flag, value]
    assert pilot_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag} must be ") and "; got " in err[0]
    assert not out.exists()
