"""``python -m evaluation.prior_sweep``: variants of the seam offset scored like evaluate rows."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.prior_sweep import main, sweep
from evaluation.sets import load_set
from pixperfect.models.seam_offset import DEFAULT_CG, cg_iterations, seam_offset


def _write(folder, name, gen, mask, gt, families):
    to8 = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))  # noqa: E731
    to8(gen).save(folder / f"{name}.gen.png")
    to8(gt).save(folder / f"{name}.gt.png")
    Image.fromarray((mask * 255).astype(np.uint8)).save(folder / f"{name}.mask.png")
    (folder / f"{name}.json").write_text(json.dumps({"families": families}))


@pytest.fixture()
def tiny_set(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    clean = np.stack([0.3 + 0.3 * xx, 0.4 + 0.2 * yy, 0.5 - 0.2 * xx], -1)
    mask = np.zeros((64, 64))
    mask[16:48, 12:44] = 1
    cast = clean + mask[..., None] * np.array([0.08, -0.06, 0.04])
    _write(tmp_path, "a", cast, mask, clean, ["color_uniform"])
    _write(tmp_path, "b", clean, mask, clean, ["clean"])
    return tmp_path


def test_sweep_scores_the_refiners_view_of_each_variant(tiny_set):
    records = load_set(str(tiny_set))
    table = sweep(records, rings=[4], shrinks=[0.0], compensates=[False, True])
    assert set(table) == {"step ring=4 shrink=0", "jump ring=4 shrink=0"}
    jump = table["jump ring=4 shrink=0"]
    assert jump["color_uniform"] < 0.05            # a uniform cast on shading: the jump removes it
    assert jump["clean"] < 1e-3                    # absolute masked L1: the clean edit stays put
    assert table["step ring=4 shrink=0"]["color_uniform"] > jump["color_uniform"]  # raw step reads the shading
    # the reference, computed directly on the 8-bit images
    d = records[0].decode()
    x, m, gt = d["x_gen"][None], d["mask"][None], d["x_gt"][None]
    out = (x + seam_offset(x, m, ring=4, shrink=0.0, iterations=cg_iterations(DEFAULT_CG, *x.shape[-2:]), compensate=True)).clamp(0, 1)
    from pixperfect.metrics.image import masked_l1
    assert jump["color_uniform"] == pytest.approx(float(masked_l1(out, gt, m) / masked_l1(x, gt, m)), rel=1e-5)


def test_cli_prints_one_row_per_variant_and_rejects_bad_values(tiny_set, capsys):
    assert main(["--set", str(tiny_set), "--ring", "0,4", "--shrink", "8", "--compensate", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("| variant | overall |") and len(out) == 4
    assert main(["--set", str(tiny_set), "--ring", "4", "--shrink", "8", "--compensate", "0,1", "--gap", "1,3"]) == 0
    names = [line.split(" | ")[0][2:] for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert names == ["step ring=4 shrink=8", "jump ring=4 shrink=8", "jump ring=4 shrink=8 gap=3"]  # no gap on a step
    assert main(["--set", str(tiny_set), "--ring", "4", "--shrink", "8", "--compensate", "1",
                 "--shrinkage", "james_stein,wiener"]) == 0
    names = [line.split(" | ")[0][2:] for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert names == ["jump ring=4 shrink=8", "jump ring=4 shrink=8 wiener"]  # the default rule is not named
    rows = sweep(load_set(str(tiny_set)), rings=[4], shrinks=[8.0], compensates=[True], shrinkages=["james_stein", "wiener"],
                 oracle_gain=True)
    assert rows["jump ring=4 shrink=8"] != rows["jump ring=4 shrink=8 wiener"]  # the rule reaches the variant
    assert rows["jump ring=4 shrink=8 oracle gain"] != rows["jump ring=4 shrink=8 wiener oracle gain"]  # and its bound
    with pytest.raises(SystemExit):
        main(["--set", str(tiny_set), "--shrinkage", "james_stein,soft"])
    assert "each rule must be one of james_stein, wiener" in capsys.readouterr().err
    for bad in (["--ring", "-1"], ["--compensate", "2"], ["--shrink", "x"], ["--gap", "0"], ["--shrinkage", "soft"]):
        with pytest.raises(SystemExit):
            main(["--set", str(tiny_set), *bad])
    assert main(["--set", str(tiny_set / "missing")]) == 2


def test_oracle_gain_is_the_best_gain_per_image_and_bounds_the_variant(tiny_set, capsys):
    """The oracle row picks, per image, the gain on the offset that scores best against the target:
    never worse than gain 1 (the variant) or gain 0 (the input), and equal to a direct search."""
    from pixperfect.metrics.image import masked_l1

    records = load_set(str(tiny_set))
    table = sweep(records, rings=[4], shrinks=[0.0], compensates=[True], oracle_gain=True)
    plain, oracle = table["jump ring=4 shrink=0"], table["jump ring=4 shrink=0 oracle gain"]
    assert oracle["overall"] <= min(plain["overall"], 1.0) + 1e-9
    # per image, not per batch: the clean edit gets gain 0 (no change) while the cast keeps gain 1
    assert plain["clean"] > 1e-4 and oracle["clean"] == 0.0
    d = records[0].decode()
    x, m, gt = d["x_gen"][None], d["mask"][None], d["x_gt"][None]
    field = seam_offset(x, m, ring=4, shrink=0.0, iterations=cg_iterations(DEFAULT_CG, *x.shape[-2:]), compensate=True)
    best = min(float(masked_l1((x + a * field).clamp(0, 1), gt, m)) for a in np.round(np.arange(-0.5, 2.01, 0.1), 1))
    assert oracle["color_uniform"] == pytest.approx(best / float(masked_l1(x, gt, m)), rel=1e-5)
    assert main(["--set", str(tiny_set), "--ring", "4", "--shrink", "0", "--compensate", "1", "--oracle-gain"]) == 0
    names = [line.split(" | ")[0][2:] for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert names == ["jump ring=4 shrink=0", "jump ring=4 shrink=0 oracle gain"]


def test_constant_gain_rows_scale_the_offset(tiny_set, capsys):
    """``--gain`` rows are the edit + gain·offset, equal to a direct computation; gain 0 is the input."""
    from pixperfect.metrics.image import masked_l1

    records = load_set(str(tiny_set))
    table = sweep(records, rings=[4], shrinks=[0.0], compensates=[True], gains=[0.0, 0.5, 1.0])
    assert list(table) == ["jump ring=4 shrink=0 ×0", "jump ring=4 shrink=0 ×0.5", "jump ring=4 shrink=0"]
    assert table["jump ring=4 shrink=0 ×0"]["color_uniform"] == pytest.approx(1.0)
    d = records[0].decode()
    x, m, gt = d["x_gen"][None], d["mask"][None], d["x_gt"][None]
    half = (x + 0.5 * seam_offset(x, m, ring=4, shrink=0.0, iterations=cg_iterations(DEFAULT_CG, *x.shape[-2:]), compensate=True)).clamp(0, 1)
    expected = float(masked_l1(half, gt, m) / masked_l1(x, gt, m))
    assert table["jump ring=4 shrink=0 ×0.5"]["color_uniform"] == pytest.approx(expected, rel=1e-5)
    assert 0.4 < expected < 0.7  # half the cast is left (a check that the row is not the plain variant)
    assert main(["--set", str(tiny_set), "--ring", "4", "--shrink", "0", "--compensate", "1", "--gain", "1,1.2"]) == 0
    names = [line.split(" | ")[0][2:] for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert names == ["jump ring=4 shrink=0", "jump ring=4 shrink=0 ×1.2"]


def test_output_bits_scores_the_variant_as_an_8_bit_image(tiny_set):
    records = load_set(str(tiny_set))
    table = sweep(records, rings=[4], shrinks=[0.0], compensates=[True], output_bits=8)
    d = records[0].decode()
    x, m, gt = d["x_gen"][None], d["mask"][None], d["x_gt"][None]
    out = (x + seam_offset(x, m, ring=4, shrink=0.0, iterations=cg_iterations(DEFAULT_CG, *x.shape[-2:]), compensate=True)).clamp(0, 1)
    from pixperfect.metrics.image import masked_l1
    as_file = torch.from_numpy(np.array(Image.fromarray((out[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))))
    as_file = as_file.permute(2, 0, 1)[None].float() / 255  # the variant written as a PNG and read back
    expected = float(masked_l1(as_file, gt, m) / masked_l1(x, gt, m))
    assert table["jump ring=4 shrink=0"]["color_uniform"] == pytest.approx(expected, rel=1e-6)
    float_table = sweep(records, rings=[4], shrinks=[0.0], compensates=[True])
    assert float_table["jump ring=4 shrink=0"]["color_uniform"] != pytest.approx(expected, rel=1e-6)


def test_cg_rows_are_the_fill_with_that_budget(tmp_path, capsys):
    """``--cg`` rows: the push-pull fill then cg × the longer side CG iterations, equal to a direct
    computation; the default budget is the refiner's and is not named. A gradient cast, where the
    two fills differ (push-pull is exact for a uniform cast)."""
    from pixperfect.metrics.image import masked_l1

    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    clean = np.stack([0.4 + 0.2 * yy, 0.5 + 0.1 * yy, 0.45 - 0.1 * yy], -1)
    mask = np.zeros((64, 64))
    mask[16:48, 12:52] = 1
    cast = clean + mask[..., None] * (xx[..., None] - 0.5) * np.array([0.3, 0.15, -0.15])
    _write(tmp_path, "c", cast, mask, clean, ["color_gradient"])
    records = load_set(str(tmp_path))
    table = sweep(records, rings=[4], shrinks=[0.0], compensates=[True], cgs=[0.0, DEFAULT_CG])
    assert list(table) == ["jump ring=4 shrink=0 cg=0", "jump ring=4 shrink=0"]
    d = records[0].decode()
    x, m, gt = d["x_gen"][None], d["mask"][None], d["x_gt"][None]
    scores = []
    for name, iterations in (("jump ring=4 shrink=0 cg=0", 0), ("jump ring=4 shrink=0", 16)):
        out = (x + seam_offset(x, m, ring=4, shrink=0.0, iterations=iterations, compensate=True)).clamp(0, 1)
        scores.append(float(masked_l1(out, gt, m) / masked_l1(x, gt, m)))
        assert table[name]["color_gradient"] == pytest.approx(scores[-1], rel=1e-5)
    assert scores[1] < 0.9 * scores[0]  # the two rows are different fills: CG follows the gradient
    assert cg_iterations(DEFAULT_CG, 64, 64) == 16
    assert main(["--set", str(tmp_path), "--ring", "4", "--shrink", "0", "--compensate", "1", "--cg", "0,0.5"]) == 0
    names = [line.split(" | ")[0][2:] for line in capsys.readouterr().out.strip().splitlines()[2:]]
    assert names == ["jump ring=4 shrink=0 cg=0", "jump ring=4 shrink=0 cg=0.5"]
    with pytest.raises(SystemExit):
        main(["--set", str(tmp_path), "--cg", "-1"])


def test_block_rows_are_the_prior_with_that_correlation_radius(tmp_path, capsys):
    """``--block`` rows: the prior with its standard error widened by batch means over that radius,
    equal to a direct computation; on jumps that move together in 8-row runs it reads less than the
    default row (named without a block)."""
    from pixperfect.metrics.image import masked_l1

    rng = np.random.default_rng(0)
    clean = np.full((64, 64, 3), 0.5)
    mask = np.zeros((64, 64))
    mask[:, 32:] = 1
    runs = np.repeat(0.012 + 0.03 * rng.standard_normal(8), 8)  # a faint cast under grid-correlated jumps
    _write(tmp_path, "g", clean + mask[..., None] * runs[:, None, None], mask, clean, ["texture_jpeg"])
    records = load_set(str(tmp_path))
    table = sweep(records, rings=[4], shrinks=[6.0], compensates=[True], blocks=[0, 4])
    assert list(table) == ["jump ring=4 shrink=6", "jump ring=4 shrink=6 block=4"]
    d = records[0].decode()
    x, m, gt = d["x_gen"][None], d["mask"][None], d["x_gt"][None]
    moved = {}
    for name, block in (("jump ring=4 shrink=6", 0), ("jump ring=4 shrink=6 block=4", 4)):
        field = seam_offset(x, m, ring=4, shrink=6.0, iterations=cg_iterations(DEFAULT_CG, 64, 64), block=block)
        out = (x + field).clamp(0, 1)
        assert table[name]["texture_jpeg"] == pytest.approx(float(masked_l1(out, gt, m) / masked_l1(x, gt, m)), rel=1e-5)
        moved[block] = field.abs().mean().item()
    assert moved[4] < 0.7 * moved[0]
    with pytest.raises(SystemExit):
        main(["--set", str(tmp_path), "--block", "-1"])


def test_split_boundary_names_each_family_by_its_seam(tiny_set, capsys):
    """``--split-boundary``: a family becomes ``family·hard`` / ``family·feathered`` after its sample's
    boundary label; samples without one (clean, the whole-image VAE) keep their name; the scores are
    the same samples' as without the split."""
    from evaluation.prior_sweep import split_by_boundary
    for name, fams in (("a", ["color_uniform", "boundary.feathered"]), ("b", ["clean"])):
        (tiny_set / f"{name}.json").write_text(json.dumps({"families": fams}))
    records = load_set(str(tiny_set))
    split = split_by_boundary(records)
    assert [r.meta["families"] for r in split] == [["color_uniform·feathered", "boundary.feathered"], ["clean"]]
    assert [r.meta["families"] for r in records][0] == ["color_uniform", "boundary.feathered"]  # not changed in place
    plain = sweep(records, rings=[4], shrinks=[0.0], compensates=[True])["jump ring=4 shrink=0"]
    by_seam = sweep(split, rings=[4], shrinks=[0.0], compensates=[True])["jump ring=4 shrink=0"]
    assert by_seam["color_uniform·feathered"] == plain["color_uniform"] and "color_uniform" not in by_seam
    assert main(["--set", str(tiny_set), "--ring", "4", "--shrink", "0", "--compensate", "1", "--split-boundary"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "color_uniform·feathered" in header and "| clean |" in header
