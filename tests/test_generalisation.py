"""Issue 10's training-side guarantees: clean samples, scale-relative smoothing, multi-scale crops,
the global-drift family, and the loud warning for VAE round trips nobody carries out."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from data.stream import SampleProcessor
from simulation import BoundarySoftening, ColorShift, MaskGenerator, SimulationPipeline, TextureMismatch
from simulation.ops.global_drift import GlobalDrift


def _pipeline(**kw):
    return SimulationPipeline(MaskGenerator(), ColorShift(p=1.0), TextureMismatch(p=1.0), None,
                              BoundarySoftening(), **kw)


def test_clean_samples_have_target_equal_to_input_at_the_configured_rate(photo):
    sim = _pipeline(clean_p=0.3)
    outs = [sim(photo, torch.Generator().manual_seed(i)) for i in range(200)]
    clean = [o for o in outs if o["applied"] == ["clean"]]
    assert 0.2 < len(clean) / len(outs) < 0.4
    for o in clean:
        assert torch.equal(o["x_gen"], o["x_gt"]) and o["mask"].sum() > 0
    assert all(not torch.equal(o["x_gen"], o["x_gt"]) for o in outs if o["applied"] != ["clean"])
    batch = sim(torch.stack([photo] * 8), torch.Generator().manual_seed(1))  # a batch with clean members
    for i, applied in enumerate(batch["applied"]):
        if applied == ["clean"]:
            assert torch.equal(batch["x_gen"][i], batch["x_gt"][i])


def test_clean_p_zero_keeps_the_old_random_stream(photo):
    a = _pipeline()(photo, torch.Generator().manual_seed(5))
    b = _pipeline(clean_p=0.0)(photo, torch.Generator().manual_seed(5))
    assert torch.equal(a["x_gen"], b["x_gen"])


def test_smoothing_sigma_scales_with_the_image():
    """The same relative blur at 64² and 256²: the high-frequency energy kept is about the same."""
    op = TextureMismatch(p=1, smooth_p=1, smooth_sigma=(0.8, 0.8), jpeg_p=0, noise_p=0, vae_p=0)
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, 32, 32, generator=g)
    kept = []
    for size in (64, 256):
        img = torch.nn.functional.interpolate(base[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1)
        _, edit, _, _ = op(img, img, torch.ones(1, size, size), torch.Generator().manual_seed(0))
        lap = lambda x: (x[:, 1:-1, 1:-1] * 4 - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]).abs().mean()  # noqa: E731
        kept.append(float(lap(edit) / lap(img)))
    assert kept[0] == pytest.approx(kept[1], rel=0.25), kept


def test_global_drift_changes_the_whole_image_subtly(photo):
    sim = SimulationPipeline(MaskGenerator(), None, None, None, None, GlobalDrift(p=1.0))
    o = sim(photo, torch.Generator().manual_seed(0))
    diff = (o["x_gen"] - o["x_gt"]).abs()
    outside = (o["mask"] < 0.5).expand_as(diff)
    assert o["applied"] == ["global_drift"]
    assert diff[outside].mean() > 1e-3 and diff.max() < 0.06


def _raw_png(h=300, w=400):
    arr = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return {"__key__": "k", "png": buf.getvalue()}


def test_multiscale_crops_have_the_configured_scale_range():
    proc = SampleProcessor(64, simulation=None, downscale=(0.25, 1.0))
    raw = _raw_png()
    scales = []
    for seed in range(60):
        sample, image, _, _ = proc.prepare(raw, seed)
        assert image.shape == (3, 64, 64)
        scales.append(sample["scale"])
    lo_allowed = 64 / 300  # the photo may not get smaller than the crop
    assert min(scales) >= lo_allowed - 1e-9 and max(scales) <= 1.0
    assert max(scales) > 0.8 and min(scales) < 0.3  # the range is actually used
    logs = np.log(np.clip(scales, 0.25, 1.0))
    assert abs(np.median(logs) - math.log(0.5)) < 0.35  # log-uniform over [0.25, 1]
    with pytest.raises(ValueError, match="downscale"):
        SampleProcessor(64, simulation=None, downscale=(0.5, 2.0))


def test_unserved_vae_round_trips_warn_loudly():
    from pixperfect.training.run import warn_unserved_vae

    sim = _pipeline()
    with pytest.warns(UserWarning, match="device_simulation.autoencoder"):
        warn_unserved_vae(sim, None)
    sim.texture.vae_p = 0.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unserved_vae(sim, None)


def _small_final_evaluation(experiment: str, bench, photos, *extra: str) -> list[str]:
    """Overrides for an experiment's closing evaluation at test size: 48² set, no autoencoder, LPIPS or FID."""
    return [f"experiment={experiment}", f"final_evaluation.set={bench}", f"final_evaluation.make_set.src={photos}",
            "final_evaluation.make_set.size=48", "final_evaluation.make_set.autoencoder=null",
            "final_evaluation.lpips_net=null", "final_evaluation.fid=false", *extra]


def test_demo_final_evaluation_scores_held_out_photos(compose_cfg, tmp_path):
    """The demo's closing table comes from `evaluate` on a benchmark set built from the held-out
    photos (not the training simulation); an identity refiner scores exactly like the input."""
    import json

    from evaluation.after_training import final_evaluation
    from pixperfect.models import CMGANRefiner

    cfg = compose_cfg(_small_final_evaluation("demo", tmp_path / "bench", tmp_path / "photos",
                                              "final_evaluation.make_set.per_image=3"))
    ident = tmp_path / "ident"
    CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16).save_pretrained(ident)
    results = final_evaluation(cfg, ident, tmp_path / "out")
    manifest = json.loads((tmp_path / "bench" / "set.json").read_text())
    assert manifest["recipe"] == "benchmark" and manifest["photos"] == 2 and manifest["samples"] == 6
    from data.demo import TRAIN_PHOTOS, VAL_PHOTOS

    sources = {p.stem for p in (tmp_path / "photos").iterdir()}
    assert sources == set(VAL_PHOTOS) and not sources & set(TRAIN_PHOTOS)
    assert list(results["methods"]) == ["input", "paste_back", "poisson", "membrane", "seam_offset", "demo",
                                        "demo+original"]
    assert results["methods"]["demo"]["masked_l1"] == results["methods"]["input"]["masked_l1"]
    # the identity refiner given the original returns the edit pasted into it
    assert results["methods"]["demo+original"]["masked_l1"] == results["methods"]["paste_back"]["masked_l1"]
    assert (tmp_path / "out" / "results.md").is_file()


def test_cpu_small_benchmark_holds_out_the_photos_its_shards_skip(compose_cfg, tmp_path):
    """cpu_small's closing table: Table-1 rows plus pooling, on the first `limit` photos of the folder,
    exactly the ones `make_shards --skip limit` leaves out of training."""
    import json

    from data.make_shards import make_shards
    from evaluation.after_training import final_evaluation
    from pixperfect.models import CMGANRefiner

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / f"img{i}.png")
    cfg = compose_cfg(_small_final_evaluation("cpu_small", tmp_path / "bench", photos,
                                              "final_evaluation.make_set.limit=2", "final_evaluation.pool=2"))
    ident = tmp_path / "ident"
    CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16).save_pretrained(ident)
    results = final_evaluation(cfg, ident, tmp_path / "out")
    manifest = json.loads((tmp_path / "bench" / "set.json").read_text())
    assert manifest["photos"] == 2 and manifest["samples"] == 6 and manifest["seed"] == 2  # its own seed
    (shard,) = make_shards(photos, tmp_path / "shards", skip=cfg.final_evaluation.make_set.limit, quiet=True)
    import webdataset as wds

    trained = {s["__key__"] for s in wds.WebDataset(str(shard), shardshuffle=False)}
    assert trained == {"img2", "img3", "img4"}
    assert list(results["methods"]) == ["input", "paste_back", "poisson", "reinhard", "membrane", "seam_offset",
                                        "cpu_small", "cpu_small+pool2", "cpu_small+original", "cpu_small+original+pool2"]
    assert results["methods"]["cpu_small"]["masked_l1"] == results["methods"]["input"]["masked_l1"]


def test_train_refuses_a_bad_closing_set_limit_before_training(tmp_path):
    """A bad ``final_evaluation.make_set.limit`` would only fail after hours of training: it is one
    line and exit 2 at start-up, with nothing written."""
    import subprocess
    import sys

    from conftest import ROOT

    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "experiment=cpu_small", "data.train_shards=unused.tar",
                           f"final_evaluation.set={tmp_path / 'bench'}", f"final_evaluation.make_set.src={tmp_path}",
                           "final_evaluation.make_set.limit=0", f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "final_evaluation.make_set.limit must be a whole number of photos ≥ 1" in proc.stderr
    assert not (run_dir / "checkpoints").exists() and not (tmp_path / "bench").exists()
    from evaluation.make_set import SetError, make_set

    with pytest.raises(SetError, match="--limit must be a whole number of photos ≥ 1"):
        make_set(tmp_path, tmp_path / "set", limit=-1)


@pytest.mark.slow
def test_learnability_prints_a_per_family_curve(tmp_path, cbsd68):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from evaluation.make_set import make_set

    make_set(cbsd68, tmp_path / "bench", "benchmark", size=48, seed=0, limit=6)
    make_set(cbsd68, tmp_path / "sim", "simulation", size=48, seed=1, limit=3)
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "curve.jsonl"
    cmd = [sys.executable, "-m", "evaluation.learnability", "--set", str(tmp_path / "bench"), "--set", str(tmp_path / "sim"),
           "--at", "0,2,4", "--name", "tiny", "--out", str(out), "--head", "model=cmgan_tiny", "model.refiner.seam_prior=false",
           "data.resolution=32", "data.batch_size=4", "data.num_workers=0"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["step"], r["set"]) for r in rows] == [(s, n) for s in (0, 2, 4) for n in ("bench", "sim")]
    assert rows[0]["overall"] == rows[1]["overall"] == 1.0  # the zero-initialised refiner is the identity
    assert rows[0]["head"] == {"max_delta": 0.0, "flipped": 0.0, "gain": None, "gain_sd": None}  # no prior: no gain
    assert rows[-1]["head"]["max_delta"] > 0.0  # 4 steps move the head off zero
    assert "| variant | set | step | overall |" in proc.stdout and "max \\|Δ\\| | 8-bit values Δ changes | gain |" in proc.stdout
    table = [line for line in proc.stdout.splitlines() if line.startswith("| tiny |")]
    assert [line.split(" | ")[1:3] for line in table] == [[n, str(s)] for n in ("bench", "sim") for s in (0, 2, 4)]
    # two sets whose folders share a name could not be told apart in the table: refused
    (tmp_path / "other").mkdir()
    (tmp_path / "bench").rename(tmp_path / "other" / "sim")
    proc = subprocess.run(cmd[:4] + [str(tmp_path / "other" / "sim")] + cmd[5:], cwd=root, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 2 and "same folder name" in proc.stderr


def test_jpeg_backends_agree_in_distribution(photo):
    from pixperfect.metrics import psnr

    out = {}
    for backend in ("opencv", "albumentations"):
        op = TextureMismatch(p=1, smooth_p=0, jpeg_p=1, jpeg_quality=(40, 40), noise_p=0, vae_p=0, jpeg_backend=backend)
        scene, _, _, applied = op(photo, photo, torch.ones(1, *photo.shape[-2:]), torch.Generator().manual_seed(0))
        assert applied == ["jpeg"]
        out[backend] = float(psnr(scene[None], photo[None]))
    assert out["opencv"] == pytest.approx(out["albumentations"], abs=0.3)
    with pytest.raises(ValueError, match="jpeg_backend"):
        TextureMismatch(jpeg_backend="pil")


def test_ring_means_option_drops_the_texture_statistics_and_round_trips(tmp_path):
    """boundary_stats="mean": the global code gets the 6 ring means and the flag (not the stds), and
    the option survives save_pretrained/from_pretrained."""
    from pixperfect.models import CMGANRefiner

    torch.manual_seed(0)
    model = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, boundary_stats="mean")
    assert model.global_mlp[0].in_features == 2 * 32 + 7
    model.save_pretrained(tmp_path / "m")
    again = CMGANRefiner.from_pretrained(tmp_path / "m")
    assert again.config["boundary_stats"] == "mean"
    x = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    assert torch.equal(model(x, mask), again(x, mask))
    with pytest.raises(ValueError, match="boundary_stats"):
        CMGANRefiner(channels=[8, 16], boundary_stats="std")


def test_irreducible_share_is_zero_without_scene_texture(cbsd68_photos):
    from evaluation.calibrate import irreducible_share

    shares = irreducible_share(cbsd68_photos[:3], 48, per_photo=4)
    assert shares["without texture"] == 0.0  # colour/band/boundary only: the target is the clean photo
    assert 0.0 < shares["with texture"] < 1.0 and 0.0 < shares["all"] <= shares["with texture"]


def test_fit_probe_fits_one_fixed_batch(capsys):
    """--overfit trains and measures one fixed batch: the zero-initialised refiner (no prior) starts
    as the identity (ratio 1) and the L1 steps lower the batch's own error."""
    import json

    from evaluation.fit_probe import main

    assert main(["--overfit", "--steps", "6", "--every", "3", "--lr", "2e-3", "model=cmgan_tiny",
                 "model.refiner.seam_prior=false", "data.resolution=32", "data.batch_size=4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert rows[0]["masked_l1_ratio"] == 1.0
    assert rows[-1]["masked_l1_ratio"] < 0.99
    assert {r["measured_on"] for r in rows} == {"the fixed training batch"}
    assert main(["--steps", "0"]) == 2
    assert main(["--overfit", "--set", "eval_sets/any"]) == 2  # the fixed batch is what --overfit measures


def test_fit_probe_trains_and_reports_the_seam_scale(capsys):
    """With loss.seam_scale.weight > 0 (pixel L1 off) only the scale term trains the refiner: the
    probe reports the prior's scale over the edits, 1 with no spread at step 0, and moved after
    a few steps; the term without a seam prior is refused with the fix named."""
    import json

    from evaluation.fit_probe import main

    tiny = ["model=cmgan_tiny", "data.resolution=32", "data.batch_size=4"]
    assert main(["--overfit", "--steps", "6", "--every", "3", "--lr", "2e-3", *tiny, "model.refiner.seam_prior=true",
                 "loss.seam_scale.weight=64", "loss.spaces.pixel.l1_weight=0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert rows[0]["seam_scale"] == 1.0 and rows[0]["seam_scale_std"] == 0.0
    assert abs(rows[-1]["seam_scale"] - 1.0) > 1e-3  # only the scale term had a gradient
    assert main(["--steps", "1", *tiny, "model.refiner.seam_prior=false", "loss.seam_scale.weight=64"]) == 2
    assert "model.refiner.seam_prior=true" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_probe_measures_on_a_given_set(tmp_path, cbsd68, capsys):
    """--set: the same yardstick for any simulation. Step 0 is the untrained refiner: without the
    prior the identity (1.0); with it, exactly the seam offset's ratio on *that set*, computed here
    directly from the set's images."""
    import json

    from evaluation.fit_probe import main
    from evaluation.make_set import make_set
    from evaluation.sets import load_set
    from pixperfect.metrics import masked_l1
    from pixperfect.models.seam_offset import seam_offset

    make_set(cbsd68, tmp_path / "bench", "benchmark", size=32, seed=0, limit=4)
    tiny = ["model=cmgan_tiny", "data.resolution=32", "data.batch_size=2"]
    assert main(["--steps", "2", "--every", "1", "--set", str(tmp_path / "bench"), *tiny,
                 "model.refiner.seam_prior=false"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[0]["masked_l1_ratio"] == 1.0
    assert {r["measured_on"] for r in rows} == {str(tmp_path / "bench")}

    # Wiener shrinkage: at 32² the James–Stein prior turns every tiny seam off (ratio 1), which would not test this
    assert main(["--steps", "1", "--set", str(tmp_path / "bench"), *tiny, "model.refiner.seam_prior=true",
                 "model.refiner.seam_shrinkage=wiener"]) == 0
    step0 = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("{")))
    d = [r.decode() for r in load_set(str(tmp_path / "bench"))]
    x, m, gt = (torch.stack([s[k] for s in d]) for k in ("x_gen", "mask", "x_gt"))
    prior = (x + seam_offset(x, m, iterations=8, shrinkage="wiener")).clamp(0, 1)  # seam_cg 0.25 × 32 px
    expected = masked_l1(prior, gt, m).mean().item() / masked_l1(x, gt, m).mean().item()
    assert abs(expected - 1.0) > 1e-3 and step0["masked_l1_ratio"] == pytest.approx(expected, abs=1e-4)
    # per family: the family's summed L1 over the input's, each sample in every family it carries
    from evaluation.sets import families_of

    fams = [families_of(r) for r in load_set(str(tmp_path / "bench"))]
    refined, base = masked_l1(prior, gt, m), masked_l1(x, gt, m)
    for name, ratio in step0["families"].items():
        idx = [i for i, f in enumerate(fams) if name in f]
        assert ratio == pytest.approx(sum(refined[i].item() for i in idx) / sum(base[i].item() for i in idx), abs=1e-4)
    with_error = {f for i, fs in enumerate(fams) for f in fs
                  if sum(base[j].item() for j, g in enumerate(fams) if f in g) > 0}
    assert set(step0["families"]) == with_error and "clean" not in with_error

    assert main(["--steps", "2", "--set", str(tmp_path / "missing")]) == 2
    assert main(["--steps", "2", "--lr", "0"]) == 2 and "--lr must be > 0" in capsys.readouterr().err


def test_fit_probe_family_ratios_leave_out_families_without_input_error():
    from evaluation.fit_probe import family_ratios

    refined = torch.tensor([0.5, 0.0, 3.0, 0.2])
    base = torch.tensor([1.0, 0.0, 2.0, 0.4])
    fams = [["color_uniform", "boundary.hard"], ["clean"], ["texture_blur", "boundary.hard"], ["color_uniform"]]
    assert family_ratios(refined, base, fams) == {
        "boundary.hard": round(3.5 / 3.0, 4), "color_uniform": round(0.7 / 1.4, 4), "texture_blur": 1.5}


def _one_triple_set(folder, seed: int = 0) -> None:
    """A one-sample evaluation set (16×16 random gen/gt, full mask) as make_set writes triples."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for member in ("gen", "gt"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"s.{member}.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(folder / "s.mask.png")


def test_benchmark_curve_callback_takes_one_folder_or_a_list(tmp_path):
    """The command-line callback form: ``set=FOLDER`` or ``set=[A, B]`` (a ListConfig from Hydra);
    each set is keyed by its folder's name, and two folders of one name are refused."""
    from omegaconf import ListConfig

    from evaluation.learnability import BenchmarkCurve
    from evaluation.sets import load_set

    for name in ("a", "b", "c/a"):
        _one_triple_set(tmp_path / name)
    one = BenchmarkCurve(set=str(tmp_path / "a"), at_steps=[0])
    assert list(one.sets) == ["a"] and len(one.sets["a"]) == len(load_set(str(tmp_path / "a"))) == 1
    two = BenchmarkCurve(set=ListConfig([str(tmp_path / "a"), str(tmp_path / "b")]), at_steps=[0])
    assert list(two.sets) == ["a", "b"]
    with pytest.raises(ValueError, match="same folder name"):
        BenchmarkCurve(set=[str(tmp_path / "a"), str(tmp_path / "c" / "a")])
    with pytest.raises(ValueError, match="needs records or set"):
        BenchmarkCurve()


def test_learn_gpu_is_cpu_small_on_a_gpu_with_the_curve_on_the_readme_sets(compose_cfg, tmp_path):
    """``experiment=learn_gpu`` changes only scale and device against ``cpu_small`` (same refiner,
    simulation and loss), scores the two held-out 128² sets of the README, and its callback is built
    from the composed config."""
    from hydra.utils import instantiate

    from evaluation.learnability import BenchmarkCurve

    gpu, cpu = compose_cfg(["experiment=learn_gpu"]), compose_cfg(["experiment=cpu_small"])
    for group in ("model", "simulation", "loss", "module"):
        assert gpu[group] == cpu[group], group
    assert (gpu.data.resolution, gpu.data.batch_size, gpu.trainer.accelerator, gpu.trainer.precision) == (128, 64, "gpu", "32-true")
    assert gpu.trainer.min_epochs == 0  # else the curve's stop waits for the end of the one long epoch
    curve = gpu.callbacks.benchmark_curve
    assert [p.rsplit("/", 1)[-1] for p in curve.set] == ["cbsd20_sim_128", "cbsd20_bench_128"]
    assert list(curve.at_steps) == [0, 1500, 3000, 4500, 6000] and gpu.final_evaluation is None
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="make it with python -m evaluation.make_set"):  # sets not made yet
        instantiate(compose_cfg(["experiment=learn_gpu", f"paths.eval_sets_dir={tmp_path}"]).callbacks.benchmark_curve)
    for name in ("cbsd20_sim_128", "cbsd20_bench_128"):
        _one_triple_set(tmp_path / name)
    built = instantiate(compose_cfg(["experiment=learn_gpu", f"paths.eval_sets_dir={tmp_path}"]).callbacks.benchmark_curve)
    assert isinstance(built, BenchmarkCurve) and list(built.sets) == ["cbsd20_sim_128", "cbsd20_bench_128"]
    assert built.at == [0, 1500, 3000, 4500, 6000]


def test_benchmark_curve_stop_is_not_held_back_by_min_epochs():
    """After its last step the curve stops the run, also where the trainer's min_epochs (1 by
    default) would keep a long epoch going."""
    from types import SimpleNamespace

    from evaluation.learnability import BenchmarkCurve

    curve = BenchmarkCurve(records=[], at_steps=[0, 3])
    trainer = SimpleNamespace(should_stop=False, fit_loop=SimpleNamespace(min_epochs=1))
    curve._measure = lambda module, step: None
    curve.on_train_batch_end(trainer, SimpleNamespace(step_count=torch.tensor(2)), None, None, 0)
    assert not trainer.should_stop and trainer.fit_loop.min_epochs == 1
    curve.on_train_batch_end(trainer, SimpleNamespace(step_count=torch.tensor(3)), None, None, 0)
    assert trainer.should_stop and trainer.fit_loop.min_epochs == 0


def test_curve_records_what_the_head_adds_when_asked(cbsd68, tmp_path):
    """``head=True`` adds the head's activity to each row: zero and unit gain for the untrained
    prior refiner, the constant head's size once its output bias is set; the table shows it."""
    from types import SimpleNamespace

    from evaluation.learnability import BenchmarkCurve, table
    from evaluation.make_set import make_set
    from evaluation.sets import load_set
    from pixperfect.models import CMGANRefiner

    make_set(cbsd68, tmp_path / "bench", "benchmark", size=48, seed=0, limit=3)
    records = load_set(str(tmp_path / "bench"))
    torch.manual_seed(0)
    model = CMGANRefiner(channels=[8, 16, 32], num_ffc_blocks=1, style_dim=16, seam_prior=True, output="residual").eval()
    module = SimpleNamespace(ema=SimpleNamespace(module=model))
    curve = BenchmarkCurve(records=records, at_steps=[0, 1], name="t", head=True)
    curve._measure(module, 0)
    with torch.no_grad():
        model.to_rgb.bias[:3] = 2 * 0.7 / 255  # Δ = 0.7 of an 8-bit step everywhere
        model.to_rgb.bias[3] = 0.5             # gain 1.5
    curve._measure(module, 1)
    first, second = (r["head"] for r in curve.rows)
    assert first == {"max_delta": 0.0, "flipped": 0.0, "gain": pytest.approx(1.0), "gain_sd": pytest.approx(0.0, abs=1e-12)}
    assert second["max_delta"] == pytest.approx(0.7, rel=1e-5) and second["gain"] == pytest.approx(1.5, rel=1e-6)
    assert second["flipped"] > 0.5  # 0.7 of a step tips most 8-bit values
    lines = table(curve.rows).splitlines()
    assert lines[0].endswith("| max \\|Δ\\| | 8-bit values Δ changes | gain |")
    assert lines[-1].endswith(f"| 0.700 | {second['flipped']:.5f} | 1.500 ± 0.000 |")
    bare = SimpleNamespace(ema=SimpleNamespace(module=torch.nn.Conv2d(3, 3, 1)))  # no forward_parts: refused at once
    with pytest.raises(ValueError, match="forward_parts"):
        BenchmarkCurve(records=records, at_steps=[5], head=True).on_train_start(None, bare)
    plain = BenchmarkCurve(records=records, at_steps=[0], name="p")  # off by default: no extra forward
    plain._measure(module, 0)
    assert "head" not in plain.rows[0] and "gain" not in table(plain.rows).splitlines()[0]
