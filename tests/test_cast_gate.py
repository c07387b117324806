"""The cast gate (``model.refiner.cast_gate``): a per-image sigmoid on the head's correction Δ, and the
simulation's label it can be supervised with ("this edit has a colour cast")."""

import json

import pytest
import torch

from data.stream import SampleProcessor
from pixperfect.models import CMGANRefiner
from simulation import ColorShift, MaskGenerator, SimulationPipeline
from test_data import png_bytes

TINY = dict(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=32, seam_prior=True, seam_gain=False)


@pytest.mark.parametrize("p, label", [(1.0, True), (0.0, False)])
def test_every_sample_says_whether_a_colour_cast_was_simulated(p, label):
    simulation = SimulationPipeline(MaskGenerator(coverage=(0.1, 0.4)), color_shift=ColorShift(p=p), clean_p=0.0)
    processor = SampleProcessor(32, simulation)
    for seed in range(4):
        out = processor({"__key__": f"k{seed}", "png": png_bytes(seed, size=(48, 48))}, seed=seed)
        assert out["cast"].dtype == torch.bool and bool(out["cast"]) is label


def _refiner(bias: float) -> CMGANRefiner:
    torch.manual_seed(0)
    refiner = CMGANRefiner(**TINY, cast_gate=True)
    torch.nn.init.normal_(refiner.to_rgb.weight, std=0.2)  # a head that corrects (zero at init otherwise)
    torch.nn.init.zeros_(refiner.cast_gate.weight)
    torch.nn.init.constant_(refiner.cast_gate.bias, bias)
    return refiner.eval()


def test_a_closed_gate_leaves_the_prior_and_an_open_one_the_whole_correction():
    torch.manual_seed(1)
    x, mask = torch.rand(2, 3, 32, 32) * 0.5 + 0.25, torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    with torch.no_grad():
        closed, half, opened = (_refiner(b).forward_parts(x, mask) for b in (-60.0, 0.0, 60.0))
    assert closed.gate_logit.shape == (2, 1)
    assert closed.delta.abs().max() < 1e-12 and opened.delta.abs().max() > 1e-3
    assert torch.allclose(closed.image, (x + closed.offset).clamp(0, 1), atol=1e-7)  # the prior alone
    assert torch.allclose(half.delta, 0.5 * opened.delta, atol=1e-7)  # σ(0) = ½ of the same correction


def test_each_image_gets_its_own_gate():
    torch.manual_seed(2)
    x, mask = torch.rand(3, 3, 32, 32), torch.zeros(3, 1, 32, 32)
    mask[..., 4:20, 10:30] = 1
    gated, opened = _refiner(0.0), _refiner(60.0)
    torch.nn.init.normal_(gated.cast_gate.weight, std=10.0)  # the logit now depends on the image
    with torch.no_grad():
        parts, full = gated.forward_parts(x, mask), opened.forward_parts(x, mask)
    logits = parts.gate_logit.flatten()
    assert logits.std() > 0.2  # the images differ, and so do their gates
    for i in range(3):
        assert torch.allclose(parts.delta[i], torch.sigmoid(logits[i]) * full.delta[i], atol=1e-6)


def test_the_gate_survives_export_and_old_exports_have_none(tmp_path):
    refiner = _refiner(0.3)
    refiner.save_pretrained(tmp_path / "gate")
    loaded = CMGANRefiner.from_pretrained(tmp_path / "gate").eval()
    x, mask = torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.forward_parts(x, mask).gate_logit, refiner.forward_parts(x, mask).gate_logit)
    CMGANRefiner(**TINY).save_pretrained(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    del config["cast_gate"]  # an export from before the option existed
    (tmp_path / "plain" / "config.json").write_text(json.dumps(config))
    plain = CMGANRefiner.from_pretrained(tmp_path / "plain")
    assert plain.cast_gate is None and plain.forward_parts(x, mask).gate_logit is None


def test_fit_probe_refuses_a_gate_weight_without_a_gate(capsys):
    from evaluation.fit_probe import main

    assert main(["--steps", "1", "--gate-weight", "1", "model=cmgan_tiny", "data.resolution=32"]) == 2
    assert "model.refiner.cast_gate=true" in capsys.readouterr().err
    assert main(["--steps", "1", "--gate-weight", "-1", "model=cmgan_tiny", "data.resolution=32"]) == 2
    assert "--gate-weight must be >= 0" in capsys.readouterr().err
