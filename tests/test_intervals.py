"""evaluation.intervals and how evaluate reports them: the interval against a bootstrap written out by
hand, pairing, determinism, the cases where it is undefined, and the tables that print it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from evaluation.intervals import ratio_interval
from evaluation.report import above_input, flat_row, markdown, write_results


def _errors(n: int, seed: int = 0, spread: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """Input errors that vary tenfold between edits, and a method ~3% worse on each, ± ``spread``."""
    g = torch.Generator().manual_seed(seed)
    base = 0.01 + 0.09 * torch.rand(n, generator=g, dtype=torch.float64)
    method = base * (1.03 + spread * torch.randn(n, generator=g, dtype=torch.float64))
    return method, base


def test_interval_matches_a_percentile_bootstrap_written_out():
    """scipy's paired percentile bootstrap against the textbook one: resample edit indices, take the
    ratio of means, read the 2.5 and 97.5 percentiles (different random draws: equal to Monte-Carlo error)."""
    method, base = _errors(40, spread=0.2)
    lo, hi = ratio_interval(method, base)
    rng = np.random.default_rng(123)
    idx = rng.integers(0, 40, size=(40_000, 40))
    a, b = method.numpy()[idx].mean(1), base.numpy()[idx].mean(1)
    ref_lo, ref_hi = np.percentile(a / b, [2.5, 97.5])
    assert lo == pytest.approx(ref_lo, abs=3e-3) and hi == pytest.approx(ref_hi, abs=3e-3)
    point = float(method.mean() / base.mean())
    assert lo < point < hi and hi - lo > 0.05
    lo90, hi90 = ratio_interval(method, base, level=0.9)  # the level is the one asked for, not a fixed 95%
    ref90 = np.percentile(a / b, [5.0, 95.0])
    assert lo90 == pytest.approx(ref90[0], abs=3e-3) and hi90 == pytest.approx(ref90[1], abs=3e-3)
    assert lo < lo90 - 6e-3 and hi90 + 6e-3 < hi  # the two levels are further apart than the tolerance


def test_pairing_keeps_an_edits_two_errors_together():
    """Input errors vary tenfold between edits, the method's ratio on each edit only by ±2%: paired,
    the interval is narrow; with the pairs broken it would be several times wider."""
    method, base = _errors(40)
    lo, hi = ratio_interval(method, base)
    shuffled = method[torch.randperm(40, generator=torch.Generator().manual_seed(1))]
    slo, shi = ratio_interval(shuffled, base)
    assert hi - lo < 0.03 and (shi - slo) > 4 * (hi - lo)
    assert lo > 1.0  # a method worse on (nearly) every edit: its whole interval is above 1


def test_interval_narrows_with_more_edits_and_is_deterministic():
    small, large = ratio_interval(*_errors(20)), ratio_interval(*_errors(320))
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert 2.0 < width(small) / width(large) < 8.0  # ~ √16 = 4
    assert ratio_interval(*_errors(20)) == small


def test_a_constant_ratio_is_its_own_interval():
    method, base = _errors(12)
    lo, hi = ratio_interval(0.5 * base, base)
    assert lo == pytest.approx(0.5, abs=1e-12) and hi == pytest.approx(0.5, abs=1e-12)
    assert ratio_interval(torch.full((4,), 0.2), torch.full((4,), 0.1)) == (pytest.approx(2.0), pytest.approx(2.0))


def test_undefined_intervals_are_none_and_bad_pairs_an_error():
    assert ratio_interval(torch.tensor([0.1]), torch.tensor([0.2])) is None  # one edit: no spread to read
    assert ratio_interval(torch.tensor([0.1, 0.2]), torch.zeros(2)) is None  # a clean family: no ratio
    assert ratio_interval(torch.tensor([0.1, float("nan"), 0.3]), torch.tensor([0.1, 0.2, 0.3])) is None
    assert ratio_interval(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.1, float("inf"), 0.3])) is None
    with pytest.raises(ValueError, match="pair up sample by sample"):
        ratio_interval(torch.rand(3), torch.rand(4))


def _results() -> dict:
    fam = lambda r, ci: {"n": 6, "masked_l1": 0.02 * (r or 0), "masked_l1_ratio": r, "masked_l1_ratio_ci": ci,  # noqa: E731
                         "masked_psnr": 30.0, "delta_e": 2.0, "seam": 0.01, "bg_mse": 0.0}
    row = lambda r, ci: {"fid": None, "lpips": None, "l1": 0.01, "psnr": 35.0, "masked_l1": 0.02 * r,  # noqa: E731
                         "masked_l1_ratio": r, "masked_l1_ratio_ci": ci, "masked_psnr": 30.0, "delta_e": 2.0,
                         "seam": 0.01, "bg_mse": 0.0, "kid": None, "clip_t": None, "sec_per_image": 0.1}
    return {"set": {"spec": "s", "samples": 12, "recipe": "benchmark"}, "notes": [],
            "methods": {"input": row(1.0, (1.0, 1.0)), "ref": row(0.9, (0.85, 0.95))},
            "families": {"content_band": {"input": fam(1.0, (1.0, 1.0)), "ref": fam(1.02, (1.01, 1.04))},
                         "texture_jpeg": {"input": fam(1.0, (1.0, 1.0)), "ref": fam(1.01, (0.97, 1.05))},
                         "color_uniform": {"input": fam(1.0, (1.0, 1.0)), "ref": fam(0.4, (0.3, 0.5))},
                         "clean": {"input": fam(None, None) | {"masked_l1": 0.0},
                                   "ref": fam(None, None) | {"masked_l1": 0.0001}}}}


def test_report_prints_intervals_and_marks_harm_beyond_the_draw(tmp_path):
    results = _results()
    assert above_input(results) == ["`ref` above the input: content_band (6) 1.0200 (1.0100–1.0400)*, "
                                    "texture_jpeg (6) 1.0100 (0.9700–1.0500)"]
    md = markdown(results)
    assert "| ref | 0.0180 | 0.900 | 0.850–0.950 | 30.00 |" in md
    assert "| color_uniform (6) | 1.000 (1.000–1.000) | 0.400 (0.300–0.500) |" in md
    assert "| clean (6) | 0.0000 | 0.0001 |" in md
    assert "- `ref` above the input: content_band (6) 1.0200 (1.0100–1.0400)*" in md
    results["methods"]["ref"]["masked_l1_ratio_ci"] = None  # undefined: empty cells, not a crash
    paths = write_results(results, tmp_path)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert rows[0]["method"] == "input" and float(rows[0]["masked_l1_ratio_ci_low"]) == 1.0
    assert rows[1]["method"] == "ref" and rows[1]["masked_l1_ratio_ci_low"] == rows[1]["masked_l1_ratio_ci_high"] == ""
    assert "masked_l1_ratio_ci" not in rows[1] and float(rows[1]["masked_l1_ratio"]) == 0.9


def test_few_edits_are_listed_but_never_marked():
    """Two edits both harmed give an interval above 1 (it is their own two ratios): listed, not starred."""
    results = _results()
    for row in results["families"]["content_band"].values():
        row["n"] = 2
    assert above_input(results)[0].startswith("`ref` above the input: content_band (2) 1.0200 (1.0100–1.0400), ")
    assert "*" not in above_input(results)[0].split(",")[0]


def test_flat_row_splits_intervals_for_one_number_cells():
    assert flat_row({"a": 1.0, "x_ci": (0.5, 0.7), "y_ci": None}) == {
        "a": 1.0, "x_ci_low": 0.5, "x_ci_high": 0.7, "y_ci_low": None, "y_ci_high": None}


def test_photo_groups_resample_each_photos_edits_together():
    """One edit per photo: the photo-level interval is the edit-level one, draw for draw. Each edit
    copied three times within its photo: resampled as edits the copies look like new evidence and
    the interval narrows; resampled as photos it is exactly the interval of the photos' totals."""
    method, base = _errors(30, spread=0.2)
    photos = [f"p{i:02d}" for i in range(30)]  # sorted as the edits are: np.unique orders the groups
    assert ratio_interval(method, base, groups=photos) == ratio_interval(method, base)
    tripled_m, tripled_b = method.repeat_interleave(3), base.repeat_interleave(3)
    tripled_photos = [p for p in photos for _ in range(3)]
    by_photo = ratio_interval(tripled_m, tripled_b, groups=tripled_photos)
    assert by_photo == pytest.approx(ratio_interval(3 * method, 3 * base), abs=1e-12)
    by_edit = ratio_interval(tripled_m, tripled_b)
    assert (by_edit[1] - by_edit[0]) < 0.75 * (by_photo[1] - by_photo[0])  # ~ 1/√3 as wide
    assert ratio_interval(method[:8], base[:8], groups=list("aabbccdd")) is None  # 4 photos: too few to read their spread
    assert ratio_interval(method[:10], base[:10], groups=list("aabbccddee")) is not None  # 5 photos
    with pytest.raises(ValueError, match="one group per sample"):
        ratio_interval(method, base, groups=photos[:5])


def test_train_final_evaluation_logs_the_interval_as_two_numbers(monkeypatch, tmp_path):
    """train.py's after-export hook keeps every number of evaluate's rows, an interval as _low/_high,
    for the loggers and the returned final/ metrics."""
    from omegaconf import OmegaConf

    import evaluation.after_training
    import pixperfect.training.tracking
    import train

    logged = {}
    monkeypatch.setattr(evaluation.after_training, "final_evaluation", lambda cfg, export, out: _results())
    monkeypatch.setattr(pixperfect.training.tracking, "log_results_table",
                        lambda loggers, name, rows: logged.update(rows))
    cfg = OmegaConf.create({"final_evaluation": {"set": "s"}, "paths": {"output_dir": str(tmp_path)}})
    final = train.final_evaluation_hook(cfg)([], str(tmp_path))
    assert logged["ref"]["masked_l1_ratio_ci_low"] == 0.85 and logged["ref"]["masked_l1_ratio_ci_high"] == 0.95
    assert final["final/ref/masked_l1_ratio_ci_low"] == 0.85 and final["final/ref/masked_l1_ratio"] == 0.9
    assert "fid" not in logged["ref"]  # None is no number
