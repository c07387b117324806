"""evaluation.intervals and how evaluate reports them: the interval against a bootstrap written out by
hand, pairing, determinism, the cases where it is undefined, and the tables that print it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from evaluation.intervals import ratio_interval
from evaluation.report import above_input, markdown, write_results


def _errors(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Input errors that vary tenfold between edits, and a method ~3% worse on each, with its own noise."""
    g = torch.Generator().manual_seed(seed)
    base = 0.01 + 0.09 * torch.rand(n, generator=g, dtype=torch.float64)
    method = base * (1.03 + 0.02 * torch.randn(n, generator=g, dtype=torch.float64))
    return method, base


def test_interval_matches_a_percentile_bootstrap_written_out():
    """scipy's paired percentile bootstrap against the textbook one: resample edit indices, take the
    ratio of means, read the 2.5 and 97.5 percentiles (different random draws: equal to Monte-Carlo error)."""
    method, base = _errors(40)
    lo, hi = ratio_interval(method, base)
    rng = np.random.default_rng(123)
    idx = rng.integers(0, 40, size=(40_000, 40))
    a, b = method.numpy()[idx].mean(1), base.numpy()[idx].mean(1)
    ref_lo, ref_hi = np.percentile(a / b, [2.5, 97.5])
    assert lo == pytest.approx(ref_lo, abs=2e-3) and hi == pytest.approx(ref_hi, abs=2e-3)
    point = float(method.mean() / base.mean())
    assert lo < point < hi and hi - lo > 1e-3


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
    assert above_input(results) == ["`ref` above the input: content_band 1.020 (1.010–1.040)*, "
                                    "texture_jpeg 1.010 (0.970–1.050)"]
    md = markdown(results)
    assert "| ref | 0.0180 | 0.900 | 0.850–0.950 | 30.00 |" in md
    assert "| color_uniform (6) | 1.000 (1.000–1.000) | 0.400 (0.300–0.500) |" in md
    assert "| clean (6) | 0.0000 | 0.0001 |" in md
    assert "- `ref` above the input: content_band 1.020 (1.010–1.040)*" in md
    paths = write_results(results, tmp_path)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert rows[1]["method"] == "ref" and float(rows[1]["masked_l1_ratio_ci_low"]) == 0.85
    assert float(rows[1]["masked_l1_ratio_ci_high"]) == 0.95 and "masked_l1_ratio_ci" not in rows[1]
