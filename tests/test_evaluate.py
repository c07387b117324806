"""evaluation.evaluate / make_set and the shared metrics: numbers against references, round trips, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixperfect.metrics as M
from evaluation.evaluate import build_methods, evaluate, run
from evaluation.make_set import SetError, make_set
from evaluation.sets import EvalInputError, load_set

ROOT = Path(__file__).resolve().parents[1]
TAEF2 = ROOT.parent / "shared" / "weights" / "taef2"


def _cfg(tmp_path, **kw):
    from omegaconf import OmegaConf

    base = {"set": None, "refiners": None, "pool": None, "regions": ["edit"],
            "baselines": ["input", "paste_back", "poisson", "reinhard", "histogram"], "out_dir": str(tmp_path / "out"),
            "batch_size": 4, "device": "cpu", "limit": None, "seed": 0,
            "metrics": {"lpips_net": None, "fid": False, "kid_subset_size": 50, "clip_model": None},
            "contact_sheet_rows": 2, "logger": None, "wandb": {"project": "p", "group": None, "name": None}}
    base.update(kw)
    return OmegaConf.create(base)


@pytest.fixture(scope="module")
def bench_set(tmp_path_factory, cbsd68):
    out = tmp_path_factory.mktemp("sets") / "bench"
    ae = str(TAEF2) if TAEF2.is_dir() else None
    make_set(cbsd68, out, "benchmark", size=64, seed=3, autoencoder=ae, limit=10)
    return out


@pytest.fixture(scope="module")
def identity_refiner(tmp_path_factory):
    from pixperfect.models import CMGANRefiner

    path = tmp_path_factory.mktemp("refiners") / "identity"
    CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16).save_pretrained(path)  # zero-init head
    return path


# ------------------------------------------------------------------ metrics vs references
def test_psnr_and_delta_e_match_skimage():
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 24, 32, generator=g), torch.rand(2, 3, 24, 32, generator=g)
    b = (a + 0.1 * (b - 0.5)).clamp(0, 1)
    for i in range(2):
        ref = peak_signal_noise_ratio(b[i].double().numpy(), a[i].double().numpy(), data_range=1.0)
        assert M.psnr(b, a)[i].item() == pytest.approx(ref, abs=1e-3)
    mask = torch.zeros(2, 1, 24, 32)
    mask[:, :, 4:15, 6:20] = 1
    de = deltaE_ciede2000(rgb2lab(a[1].permute(1, 2, 0).double().numpy()), rgb2lab(b[1].permute(1, 2, 0).double().numpy()))
    assert M.delta_e(b, a, mask)[1].item() == pytest.approx(de[4:15, 6:20].mean(), rel=1e-3)
    assert np.abs(M.ciede2000(a, b)[0].numpy() - deltaE_ciede2000(
        rgb2lab(a[0].permute(1, 2, 0).double().numpy()), rgb2lab(b[0].permute(1, 2, 0).double().numpy()))).max() < 5e-3


def test_masked_metrics_use_the_dilated_mask_and_bg_mse_the_rest():
    x = torch.zeros(1, 3, 128, 128)
    mask = torch.zeros(1, 1, 128, 128)
    mask[..., 40:80, 40:80] = 1
    band = M.band_px(128, 128)
    assert band == 2
    pred = x.clone()
    pred[..., 38:82, 38:82] = 0.5  # the mask and its band: masked L1 0.5 exactly, background untouched
    assert M.masked_l1(pred, x, mask).item() == pytest.approx(0.5)
    assert M.bg_mse(pred, x, mask).item() == 0.0
    pred[..., 0, 0] = 1.0
    assert M.bg_mse(pred, x, mask).item() == pytest.approx(3 / (3 * (128 * 128 - 44 * 44)))
    assert M.seam(x, x, mask).item() == 0.0


def test_fid_with_injected_extractor_equals_scipy_frechet_distance():
    from scipy import linalg

    torch.manual_seed(0)
    extractor = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 5))
    fd = M.FeatureDistance(feature=extractor)
    real, fake = torch.rand(40, 3, 16, 16), torch.rand(40, 3, 16, 16) ** 2
    fd.update(real[:20], real=True), fd.update(real[20:], real=True), fd.update(fake, real=False)
    with torch.no_grad():
        fr, ff = extractor(real).double().numpy(), extractor(fake).double().numpy()
    mu1, mu2, s1, s2 = fr.mean(0), ff.mean(0), np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    out = fd.compute()
    assert out["fid"] == pytest.approx(ref, rel=1e-6, abs=1e-9)
    assert out["kid"] is not None and out["kid"] > 0


def test_fid_is_null_with_a_reason_when_inception_weights_are_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    fd = M.FeatureDistance()
    assert not fd.available and "weights" in fd.reason
    fd.update(torch.rand(2, 3, 8, 8), real=True)
    assert fd.compute() == {"fid": None, "kid": None}


# ------------------------------------------------------------------ make_set
def test_make_set_is_byte_identical_and_labels_families(bench_set, cbsd68, tmp_path):
    again = tmp_path / "again"
    ae = str(TAEF2) if TAEF2.is_dir() else None
    make_set(cbsd68, again, "benchmark", size=64, seed=3, autoencoder=ae, limit=10)
    for a in sorted(bench_set.iterdir()):
        assert a.read_bytes() == (again / a.name).read_bytes(), a.name
    records = load_set(str(bench_set))
    assert len(records) == 10
    fams = [r.meta["families"][0] for r in records]
    assert len(set(fams)) == 10, "round-robin dealing gives 10 photos 10 different families"
    for rec in records:
        s = rec.decode()
        fam = rec.meta["families"][0]
        inside = M.dilate(s["mask"][None], 2 * M.band_px(64, 64))[0] > 0.5
        diff = (s["x_gen"] - s["x_gt"]).abs().amax(0, keepdim=True)
        if fam == "clean":
            assert diff.max() == 0  # x_gen == x_gt
        elif fam == "vae_full":
            assert diff[~inside].mean() > 0.005  # the background was re-decoded too
        else:
            assert diff[~inside].max() <= 1 / 255, f"{fam} changed the background"
            assert diff[inside].max() > 2 / 255, f"{fam} left the edit untouched"


def test_clean_recipe_is_all_clean(cbsd68, tmp_path):
    make_set(cbsd68, tmp_path / "clean", "clean", size=48, seed=0, limit=3)
    for rec in load_set(str(tmp_path / "clean")):
        s = rec.decode()
        assert torch.equal(s["x_gen"], s["x_gt"]) and rec.meta["families"] == ["clean"] and s["mask"].sum() > 0


def test_simulation_samples_nothing_changed_are_labelled_clean(cbsd68, tmp_path):
    """A simulation sample whose only draws shape the seam (boundary) or run on the device (the VAE
    round trip, which make_set does not run) is its target: labelled ``clean``, and x_gen == x_gt."""
    overrides = ["clean_p=0", "color_shift=null", "content_band=null", "global_drift=null", "texture.p=0.5",
                 "texture.smooth_p=0", "texture.jpeg_p=0", "texture.noise_p=0", "texture.resynth_p=0", "texture.vae_p=1",
                 "boundary.p=1"]
    make_set(cbsd68, tmp_path / "sim", "simulation", size=48, seed=0, limit=3, per_image=4, simulation="demo",
             sim_overrides=overrides)
    records = list(load_set(str(tmp_path / "sim")))
    assert len(records) == 12
    for rec in records:
        s = rec.decode()
        assert "boundary" in rec.meta["families"] and rec.meta["families"][-1] == "clean", rec.meta["families"]
        assert torch.equal(s["x_gen"], s["x_gt"])


def test_simulation_recipe_takes_a_named_config_and_overrides(cbsd68, tmp_path):
    """``--simulation demo --sim-override …``: the demo's simulation with every colour cast on and
    every seam hard and on the mask, so each sample's edit differs from its target only inside
    the mask, and the labels say what was applied."""
    overrides = ["clean_p=0", "color_shift.p=1", "texture=null", "content_band=null", "global_drift=null",
                 "boundary.p_blur=0", "boundary.p_shift=0"]
    make_set(cbsd68, tmp_path / "sim", "simulation", size=48, seed=0, limit=3, simulation="demo",
             sim_overrides=overrides)
    for rec in load_set(str(tmp_path / "sim")):
        s = rec.decode()
        inside = s["mask"][0] > 0.5
        diff = (s["x_gen"] - s["x_gt"]).abs().amax(0)
        assert "color_shift" in rec.meta["families"]
        assert diff[~inside].max() <= 1 / 255 and diff[inside].mean() > 2 / 255
    with pytest.raises(SetError, match="cannot compose simulation 'nope'"):
        make_set(cbsd68, tmp_path / "bad", "simulation", size=48, limit=1, simulation="nope")
    with pytest.raises(SetError, match="--recipe simulation; got them with --recipe benchmark"):
        make_set(cbsd68, tmp_path / "bad", "benchmark", size=48, limit=1, sim_overrides=["clean_p=0"])


# ------------------------------------------------------------------ evaluate
def test_identity_refiner_row_equals_input_row(bench_set, identity_refiner, tmp_path):
    cfg = _cfg(tmp_path, set=str(bench_set), refiners={"ident": str(identity_refiner)}, pool=3)
    results, per = evaluate(load_set(str(bench_set)), build_methods(cfg), 4, progress=False)
    for row in ("ident", "ident+pool3"):
        for k in ("l1", "psnr", "masked_l1", "masked_psnr", "delta_e", "seam", "bg_mse"):
            assert torch.equal(per[row][k], per["input"][k]), (row, k)
        for fam, rows in results["families"].items():
            assert rows[row]["masked_l1"] == rows["input"]["masked_l1"], fam


def test_family_intervals_pair_each_familys_own_edits(bench_set, identity_refiner, tmp_path):
    """Each family's interval is the bootstrap of that family's edits, the row's and the input's
    errors paired edit by edit; an identity refiner's is exactly (1, 1)."""
    from evaluation.intervals import ratio_interval
    from evaluation.sets import families_of

    records = load_set(str(bench_set))
    cfg = _cfg(tmp_path, refiners={"ident": str(identity_refiner)}, baselines=["input", "paste_back"])
    results, per = evaluate(records, build_methods(cfg), 4, progress=False)
    assert results["methods"]["ident"]["masked_l1_ratio_ci"] == (1.0, 1.0)
    checked = 0
    for fam, rows in results["families"].items():
        ix = torch.tensor([i for i, r in enumerate(records) if fam in families_of(r)])
        expected = ratio_interval(per["paste_back"]["masked_l1"][ix], per["input"]["masked_l1"][ix])
        assert rows["paste_back"]["masked_l1_ratio_ci"] == expected, fam
        checked += expected is not None and expected[0] < expected[1]
    assert checked >= 1  # a family where paste-back differs between edits: a real interval, not a point


def test_interval_by_photo_keeps_a_photos_edits_together(bench_set, tmp_path):
    """The bench set has one edit per photo, so resampling photos is resampling edits; a set with
    several edits per photo groups them by the photo in each sample's json."""
    from evaluation.evaluate import interval_groups

    records = load_set(str(bench_set))
    cfg = _cfg(tmp_path, baselines=["input", "paste_back"])
    by_edit, _ = evaluate(records, build_methods(cfg), 4, progress=False)
    by_photo, _ = evaluate(records, build_methods(cfg), 4, progress=False, interval_by="photo")
    assert by_photo["interval_by"] == "photo" and by_edit["interval_by"] == "edit"
    assert by_photo["methods"]["paste_back"]["masked_l1_ratio_ci"] == by_edit["methods"]["paste_back"]["masked_l1_ratio_ci"]
    assert interval_groups(records, "photo") == [r.meta["source"] for r in records] and interval_groups(records, "edit") is None
    with pytest.raises(EvalInputError, match="interval_by must be one of edit, photo; got 'image'"):
        interval_groups(records, "image")


def test_original_row_is_the_refiner_given_the_original(bench_set, identity_refiner, tmp_path):
    """``original=true`` adds NAME+original (and its pooled row): an identity refiner given the
    original returns the edit pasted into it, so the row equals ``paste_back`` exactly."""
    cfg = _cfg(tmp_path, refiners={"ident": str(identity_refiner)}, pool=2, original=True,
               baselines=["input", "paste_back"])
    methods = build_methods(cfg)
    assert list(methods) == ["input", "paste_back", "ident", "ident+pool2", "ident+original", "ident+original+pool2"]
    _, per = evaluate(load_set(str(bench_set)), methods, 4, progress=False)
    for k in per["input"]:
        assert torch.equal(per["ident+original"][k], per["paste_back"][k]), k
        assert torch.equal(per["ident"][k], per["input"][k]), k
    assert float(per["ident+original"]["bg_mse"].max()) == 0.0 < float(per["input"]["bg_mse"].max())


def test_paste_back_equals_input_when_background_is_the_original(bench_set, tmp_path):
    cfg = _cfg(tmp_path, baselines=["input", "paste_back"])
    records = [r for r in load_set(str(bench_set)) if "boundary.hard" in r.meta["families"]]
    assert records
    _, per = evaluate(records, build_methods(cfg), 4, progress=False)
    for k in per["input"]:
        assert torch.allclose(per["paste_back"][k], per["input"][k], atol=1e-12), k


def test_folder_of_triples_and_shards_give_the_same_table(bench_set, tmp_path):
    folder = tmp_path / "triples"
    folder.mkdir()
    for rec in load_set(str(bench_set)):
        for m in ("gen", "mask", "gt"):
            (folder / f"{rec.key}.{m}.png").write_bytes(rec.data[m])
        (folder / f"{rec.key}.json").write_text(json.dumps(rec.meta))
    a = run(_cfg(tmp_path / "a", set=str(bench_set), contact_sheet_rows=1))
    b = run(_cfg(tmp_path / "b", set=str(folder), contact_sheet_rows=1))
    strip = lambda r: {k: {m: {x: y for x, y in v.items() if x != "sec_per_image"} for m, v in r[k].items()}  # noqa: E731
                       for k in ("methods", "families")}
    assert strip(a) == strip(b)
    out = tmp_path / "a" / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["input"]["masked_l1_ratio"] == 1.0 and saved["methods"]["input"]["masked_l1_ratio_ci"] == [1.0, 1.0]
    assert (out / "results.md").read_text().startswith("# Evaluation")
    assert (out / "results.csv").read_text().splitlines()[0].startswith("method,fid,lpips,l1,psnr")
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width == 160 * 6 and np.asarray(sheet).std() > 10  # input, 4 baselines, gt; not blank


def _triples(folder: Path, n: int = 2, size=(32, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for m in ("gen", "gt"):
            Image.fromarray(np.full((*size, 3), 100 + i, np.uint8)).save(folder / f"s{i}.{m}.png")
        Image.fromarray(np.full(size, 255, np.uint8)).save(folder / f"s{i}.mask.png")
    return folder


@pytest.mark.parametrize("case, message", [
    ("missing_gt", "has no gt image"), ("sizes", "mismatched sizes"), ("empty", "holds neither"),
    ("refiner", "cannot load"),
])
def test_bad_inputs_are_one_clear_error(tmp_path, case, message):
    folder = _triples(tmp_path / "set")
    refiners = None
    if case == "missing_gt":
        (folder / "s1.gt.png").unlink()
    elif case == "sizes":
        Image.fromarray(np.zeros((16, 32), np.uint8)).save(folder / "s0.mask.png")
    elif case == "empty":
        folder = tmp_path / "nothing"
        folder.mkdir()
    else:
        bad = tmp_path / "bad_refiner"
        bad.mkdir()
        (bad / "config.json").write_text("{not json")
        refiners = {"bad": str(bad)}
    with pytest.raises(EvalInputError, match=message):
        run(_cfg(tmp_path, set=str(folder), refiners=refiners))


def test_cli_exit_code_2_and_one_line(tmp_path):
    folder = _triples(tmp_path / "set")
    (folder / "s0.gt.png").unlink()
    proc = subprocess.run([sys.executable, "-m", "evaluation.evaluate", f"set={folder}", f"out_dir={tmp_path / 'o'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "s0" in lines[0], proc.stderr


from tests.test_clip_t import tiny_clip  # noqa: E402,F401  (fixture)


def test_clip_t_column_for_sets_with_prompts(tmp_path, tiny_clip):  # noqa: F811
    from evaluation.clip_t import ClipT

    folder = _triples(tmp_path / "set", n=3, size=(16, 16))
    prompts = ["a red house", "a cat", "blue sky"]
    for i, p in enumerate(prompts):
        (folder / f"s{i}.txt").write_text(p)
    results = run(_cfg(tmp_path, set=str(folder), baselines=["input"],
                       metrics={"lpips_net": None, "fid": False, "kid_subset_size": 50, "clip_model": str(tiny_clip)}))
    records = load_set(str(folder))
    images = torch.stack([r.decode()["x_gen"] for r in records])
    expected = ClipT(str(tiny_clip))(images, [r.prompt for r in records]).double().mean().item()
    assert results["methods"]["input"]["clip_t"] == pytest.approx(expected, rel=1e-5)
    no_model = run(_cfg(tmp_path / "b", set=str(folder), baselines=["input"]))
    assert no_model["methods"]["input"]["clip_t"] is None
    assert any(n.startswith("CLIP-T is null") for n in no_model["notes"])


def test_wandb_table_holds_the_results(bench_set, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    results = run(_cfg(tmp_path, set=str(bench_set), baselines=["input", "paste_back"], logger="wandb",
                       contact_sheet_rows=1))
    tables = list((tmp_path / "out" / "wandb").glob("offline-run-*/files/media/table/evaluate/results_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    cols = table["columns"]
    rows = {r[0]: dict(zip(cols, r)) for r in table["data"]}
    assert set(rows) == {"input", "paste_back"}
    for name in rows:
        assert rows[name]["masked_l1"] == pytest.approx(results["methods"][name]["masked_l1"])
    sheets = list((tmp_path / "out" / "wandb").glob("offline-run-*/files/media/images/evaluate/contact_sheet_*.png"))
    assert len(sheets) == 1 and np.asarray(Image.open(sheets[0])).std() > 10


def test_make_set_skips_unreadable_photos_and_keeps_an_old_set_on_failure(cbsd68_photos, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for p in cbsd68_photos[:2]:
        (src / p.name).symlink_to(p)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    manifest = make_set(src, tmp_path / "set", "clean", size=32, seed=0)
    assert manifest["samples"] == 2 and manifest["unreadable"] == ["broken.png"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir()}
    with pytest.raises(SetError, match="families"):  # a failure while building: the old set stays whole
        make_set(src, tmp_path / "set", "benchmark", size=32, seed=0, families=["nope"], overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir()} == before
    assert not (tmp_path / "set.partial").exists()


def test_truncated_member_is_one_clear_error(tmp_path):
    folder = _triples(tmp_path / "set")
    data = (folder / "s1.gen.png").read_bytes()
    (folder / "s1.gen.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(EvalInputError, match="s1.*gen is not a readable image"):
        load_set(str(folder))


def test_fid_column_with_an_injected_extractor(bench_set):
    """The FID/KID columns through evaluate: the input row equals FID computed on its own features."""
    from torchmetrics.image.fid import _compute_fid

    torch.manual_seed(0)
    extractor = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 4))
    records = load_set(str(bench_set))
    methods = build_methods(_cfg(Path("."), baselines=["input", "paste_back"]))
    results, _ = evaluate(records, methods, 4, distances=M.FeatureDistance(feature=extractor), progress=False)
    decoded = [r.decode() for r in records]
    with torch.no_grad():
        fr = extractor(torch.stack([d["x_gt"] for d in decoded])).double()
        ff = extractor(torch.stack([d["x_gen"] for d in decoded])).double()
    expected = float(_compute_fid(fr.mean(0), torch.cov(fr.T), ff.mean(0), torch.cov(ff.T)))
    assert results["methods"]["input"]["fid"] == pytest.approx(expected, rel=1e-6)
    assert results["methods"]["input"]["fid"] != results["methods"]["paste_back"]["fid"]


# ------------------------------------------------------------------ output_bits
def _constant_head_refiner(path: Path, steps: float) -> Path:
    """A refiner that adds ``steps``/255 to every channel (the zero-initialised output conv's bias)."""
    from pixperfect.models import CMGANRefiner

    model = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, output="residual")
    with torch.no_grad():
        model.to_rgb.bias.fill_(2.0 * steps / 255)  # Δ = ½·head
    model.save_pretrained(path)
    return path


def test_output_bits_scores_what_an_8_bit_file_keeps(bench_set, tmp_path):
    """A correction under half an 8-bit step is gone from the saved image: with ``output_bits=8`` the
    row equals the input's exactly; in float it does not. Over half a step it moves every 8-bit value
    by exactly one step."""
    refiners = {"under": str(_constant_head_refiner(tmp_path / "under", 0.4)),
                "over": str(_constant_head_refiner(tmp_path / "over", 0.6))}
    records = load_set(str(bench_set))
    cfg = _cfg(tmp_path, set=str(bench_set), refiners=refiners, baselines=["input"])
    _, float_per = evaluate(records, build_methods(cfg), 4, progress=False)
    assert not torch.equal(float_per["under"]["masked_l1"], float_per["input"]["masked_l1"])
    cfg8 = _cfg(tmp_path, set=str(bench_set), refiners=refiners, baselines=["input"], output_bits=8)
    methods = build_methods(cfg8)
    _, per = evaluate(records, methods, 4, progress=False)
    for k in ("l1", "masked_l1", "psnr", "delta_e", "seam", "bg_mse"):
        assert torch.equal(per["under"][k], per["input"][k]), k
    sample = records[0].decode()
    g, m, o = (sample[k][None] for k in ("x_gen", "mask", "x_gt"))
    out = methods["over"](g, m, o, 0)
    steps = (out - g) * 255
    assert torch.equal(steps.round(), steps.round().clamp(0, 1)) and torch.allclose(steps, steps.round(), atol=1e-4)
    moved = steps.round().amax(dim=1) > 0  # a pixel moved: inside the dilated mask, where it was below 255
    assert m[0, 0].bool().logical_and(g[0].amax(dim=0) < 1.0)[None].logical_and(~moved).sum() == 0
    assert moved.float().mean() < 1.0  # the background outside the dilated mask is kept


def test_output_bits_is_reported_and_checked(bench_set, tmp_path):
    results = run(_cfg(tmp_path / "a", set=str(bench_set), baselines=["input", "paste_back"], output_bits=8,
                       contact_sheet_rows=1))
    assert results["output_bits"] == 8 and any("8 bits per channel" in n for n in results["notes"])
    assert "output_bits=8" in (tmp_path / "a" / "out" / "results.md").read_text()
    for bad in (0, 8.5, 17, True, "eight"):
        with pytest.raises(EvalInputError, match="output_bits"):
            build_methods(_cfg(tmp_path, baselines=["input"], output_bits=bad))
