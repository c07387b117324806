"""``evaluation.head_activity``: the head's correction, the gain and the prior, split per family."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from evaluation.head_activity import head_activity, main
from evaluation.make_set import make_set
from evaluation.sets import EvalInputError, families_of, load_set
from pixperfect.metrics.image import edit_region
from pixperfect.models import CMGANRefiner
from pixperfect.models.refiner import RefinerParts
from pixperfect.models.seam_offset import DEFAULT_CG, cg_iterations, seam_offset


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory, cbsd68):
    out = tmp_path_factory.mktemp("sets") / "bench"
    make_set(cbsd68, out, "benchmark", size=48, seed=5, limit=6)
    return out


@pytest.fixture(scope="module")
def small_set(set_dir):
    return load_set(str(set_dir))


def _refiner(delta: float | None = None, gain: float | None = None, **kw) -> CMGANRefiner:
    """A residual-head refiner whose Δ is ``delta`` everywhere and whose gain is ``gain`` (via the
    zero-initialised 1×1 output conv's bias: Δ = ½·head, scale = 1 + head)."""
    torch.manual_seed(0)
    model = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, output="residual", **kw).eval()
    with torch.no_grad():
        if delta is not None:
            model.to_rgb.bias[:3] = 2.0 * delta
        if gain is not None:
            model.to_rgb.bias[3] = gain - 1.0
    return model


class ImageDependentParts(nn.Module):
    """Δ = 0.004·x (differs per pixel and image), gain = 1 + the image's mean, offset = 0.01·(1 − x)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward_parts(self, x, mask):
        scale = (1.0 + x.mean(dim=(1, 2, 3), keepdim=True)).expand(-1, 1, *x.shape[-2:])
        offset, delta = 0.01 * (1.0 - x), 0.004 * x
        return RefinerParts((x + scale * offset + delta).clamp(0, 1), offset, scale, delta)


def test_each_family_row_equals_a_direct_computation_over_its_samples(small_set):
    table = head_activity(ImageDependentParts(), small_set, batch_size=4)  # batches of 4 and 2
    fams = {f for r in small_set for f in families_of(r)}
    assert set(table) == {"all", *fams} and len(fams) >= 3
    for fam in ["all", *fams]:
        chosen = [r.decode() for r in small_set if fam == "all" or fam in families_of(r)]
        assert table[fam]["n"] == len(chosen)
        d_sum = o_sum = values = flips = seen = 0.0
        d_max, gains, signed, image_means = 0.0, [], torch.zeros(3, dtype=torch.float64), []
        for d in chosen:
            x, m = d["x_gen"].double()[None], d["mask"][None]
            region = edit_region(m).double()
            delta, offset = 0.004 * x, 0.01 * (1 - x)
            gain = 1.0 + float(x.mean())
            d_sum += float((delta * region).sum())
            o_sum += float((offset * region).sum())
            d_max = max(d_max, float((delta * region).max()))
            seen += float(((delta >= 0.5 / 255).double() * region).sum())
            before, after = (x + gain * offset).clamp(0, 1), (x + gain * offset + delta).clamp(0, 1)
            flips += float(((before * 255).round() != (after * 255).round()).double().mul(region).sum())
            values += 3 * float(region.sum())
            gains.append(gain)
            signed += (delta * region).sum(dim=(0, 2, 3))
            image_means.append(float((delta * region).sum() / (3 * region.sum())) * 255)
        row = table[fam]
        assert row["mean_delta"] == pytest.approx(d_sum / values * 255, rel=1e-5), fam
        assert row["max_delta"] == pytest.approx(d_max * 255, rel=1e-5), fam
        assert row["mean_offset"] == pytest.approx(o_sum / values * 255, rel=1e-5), fam
        assert row["flipped"] == pytest.approx(flips / values, rel=1e-5, abs=1e-9), fam
        assert row["visible"] == pytest.approx(seen / values, rel=1e-6, abs=1e-12), fam
        g = torch.tensor(gains, dtype=torch.float64)
        assert row["gain"] == pytest.approx(float(g.mean()), rel=1e-6) and row["gain_sd"] == pytest.approx(
            float(g.std(unbiased=False)), rel=1e-6, abs=1e-12), fam
        assert row["signed"] == pytest.approx((signed / (values / 3) * 255).tolist(), rel=1e-6), fam
        assert row["signed_sd"] == pytest.approx(float(torch.tensor(image_means).std(unbiased=False)), rel=1e-6,
                                                 abs=1e-12), fam
    assert table["all"]["gain_sd"] > 0  # images differ: so does the gain, and the spread shows it
    assert 0 < table["all"]["visible"] < 1  # Δ = 0.004·x crosses half a step (x > 0.49) in part of the region


def test_untrained_prior_refiner_has_no_head_and_unit_gain(small_set):
    table = head_activity(_refiner(seam_prior=True), small_set, batch_size=3)
    for fam, row in table.items():
        assert row["mean_delta"] == 0.0 and row["max_delta"] == 0.0 and row["visible"] == 0.0, fam
        assert row["flipped"] == 0.0 and row["gain"] == pytest.approx(1.0, abs=1e-12) and row["gain_sd"] < 1e-12, fam
    # the offset column is the prior's mean magnitude over the scored region, computed here directly
    total, values = 0.0, 0.0
    for rec in small_set:
        d = rec.decode()
        x, m = d["x_gen"][None], d["mask"][None]
        region = edit_region(m)
        total += float((seam_offset(x, m, iterations=cg_iterations(DEFAULT_CG, *x.shape[-2:])).abs() * region).sum())
        values += 3.0 * float(region.sum())
    assert total > 0 and table["all"]["mean_offset"] == pytest.approx(total / values * 255, rel=1e-4)


@pytest.mark.parametrize("steps, visible", [(0.3, 0.0), (0.6, 1.0)])
def test_a_constant_head_is_read_in_8_bit_steps_and_counted_visible_from_half_a_step(small_set, steps, visible):
    table = head_activity(_refiner(delta=steps / 255, gain=1.25, seam_prior=True), small_set)
    for fam, row in table.items():
        assert row["mean_delta"] == pytest.approx(steps, rel=1e-5), fam
        assert row["max_delta"] == pytest.approx(steps, rel=1e-5), fam
        assert row["visible"] == visible, fam
        assert row["gain"] == pytest.approx(1.25, rel=1e-6), fam
        assert row["signed"] == pytest.approx([steps] * 3, rel=1e-5), fam  # one shift for every image:
        assert row["signed_sd"] == pytest.approx(0.0, abs=1e-9), fam       # no spread between them
        if steps < 0.5:  # under half a step Δ flips a rounding only where the prior left a value near a half step
            assert row["flipped"] < steps + 0.05, fam


def test_without_a_prior_gain_and_offset_are_absent_and_a_whole_step_flips_every_unclipped_value(small_set):
    row = head_activity(_refiner(delta=-1.0 / 255), small_set)["all"]
    assert row["gain"] is None and row["gain_sd"] is None and row["mean_offset"] is None
    assert row["mean_delta"] == pytest.approx(1.0, rel=1e-5) and row["visible"] == 1.0
    assert row["signed"] == pytest.approx([-1.0] * 3, rel=1e-5)  # the sign is kept
    assert 0.95 < row["flipped"] <= 1.0  # every 8-bit value moves down one step, but those already at 0


def test_cli_prints_a_row_per_family_and_rejects_bad_arguments(set_dir, small_set, tmp_path, capsys):
    folder = tmp_path / "ref"
    _refiner(delta=0.6 / 255, seam_prior=True).save_pretrained(folder)
    copy = tmp_path / "set"
    shutil.copytree(set_dir, copy)
    assert main(["--set", str(copy), "--refiner", f"r={folder}", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    fams = sorted({f for r in small_set for f in families_of(r)})
    assert "| r: family |" in out and f"| all | {len(small_set)} | 0.600 | 0.600 | 1.00000 |" in out
    assert all(f"| {f} |" in out for f in fams)
    assert main(["--set", str(copy), "--refiner", f"r={tmp_path / 'missing'}"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert main(["--set", str(copy), "--refiner", f"b={broken}"]) == 2
    assert "cannot load" in capsys.readouterr().err
    for bad in (["--refiner", "no_name"], ["--refiner", f"r={folder}", "--batch-size", "0"]):
        with pytest.raises(SystemExit):
            main(["--set", str(copy), *bad])
    with pytest.raises(EvalInputError, match="forward_parts"):
        head_activity(torch.nn.Identity(), small_set)
