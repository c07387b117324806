import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import ROOT, load_photo, split_shards
from pixperfect import Refiner
from pixperfect.export import main as export_main
from pixperfect.export import refiner_from_checkpoint
from pixperfect.training.run import build, train

EXPERIMENTS = sorted(p.relative_to(ROOT / "configs" / "experiment").with_suffix("").as_posix()
                     for p in (ROOT / "configs" / "experiment").rglob("*.yaml"))
TINY = ["model=cmgan_tiny", "data.resolution=32", "data.num_workers=0", "loss.lpips.allow_missing_weights=true"]


@pytest.fixture(scope="session")
def cbsd_shards(cbsd68_photos, tmp_path_factory):
    """Train shards from 6 CBSD68 photos (2 shards), val shards from 2 others."""
    root = tmp_path_factory.mktemp("shards")
    split_shards(root, {"train": cbsd68_photos[:6], "val": cbsd68_photos[6:8]}, maxcount=3)
    return str(root / "train" / "shard-{000000..000001}.tar"), str(root / "val" / "shard-000000.tar")


def shard_overrides(shards) -> list[str]:
    train_urls, val_urls = shards
    return ["data=shards", f"data.train_shards='{train_urls}'", f"data.val_shards='{val_urls}'", "data.batch_size=2",
            "data.val_images=2", "data.val_per_image=1", "data.shuffle_buffer=4", "data.pin_memory=false",
            "trainer=cpu", "logger=csv"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment, compose_cfg):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.model.refiner._target_.endswith("CMGANRefiner")
    assert cfg.loss.spaces.pixel.l1_weight == 64.0


DEBUG_MODES = sorted(p.stem for p in (ROOT / "configs" / "debug").glob("*.yaml"))


@pytest.mark.parametrize("debug", DEBUG_MODES)
def test_debug_runs_never_export_over_an_experiments_refiner(debug, compose_cfg):
    """A 20-step `debug=profiler` run of the demo once replaced outputs/demo/refiner; now it exports to its run dir."""
    protected = [e for e in EXPERIMENTS if compose_cfg([f"experiment={e}"]).export_dir is not None]
    assert {"demo", "cpu_small", "ablation/haar"} <= set(protected)  # experiments with an export to protect
    for experiment in protected:
        assert compose_cfg([f"experiment={experiment}", f"debug={debug}"]).export_dir is None, experiment  # → <run dir>/refiner
    explicit = compose_cfg(["experiment=demo", f"debug={debug}", "export_dir=/tmp/mine"]).export_dir
    assert explicit == "/tmp/mine"  # asking for a place still wins


def test_paper_experiment_settings(compose_cfg):
    cfg = compose_cfg(["experiment=pixperfect_flux"])
    assert cfg.data.resolution == 512 and cfg.data.batch_size == 32
    assert cfg.module.optimizer_g.lr == 5e-4 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.devices == -1 and "ddp" in cfg.trainer.strategy
    assert "wandb" in cfg.logger
    terms = cfg.loss.spaces.pixel
    assert (terms.l1_weight, terms.lpips_weight, terms.adv_weight) == (64.0, 5.0, 1.0)
    refiner = instantiate(cfg.model.refiner)
    assert 35e6 < sum(p.numel() for p in refiner.parameters()) < 50e6


def test_paper_experiment_without_shards_fails_clearly(compose_cfg):
    cfg = compose_cfg(["experiment=pixperfect_flux", "trainer=cpu", "logger=csv"])
    with pytest.raises(Exception, match="data.train_shards is not set"):
        build(cfg)


def test_train_cli_prints_config():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "train.py", "experiment=pixperfect_sd15", "seed=7", "--cfg", "job"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "seed: 7" in out.stdout and "task_name: pixperfect_sd15" in out.stdout
    assert "channels:\n    - 64" in out.stdout


ABLATION_SPACES = {"ablation/refiner_pixel_only": None, "ablation/enhance_d2": "disc", "ablation/enhance_d6": "disc",
                   "ablation/enhance_d10": "disc", "ablation/haar": "haar", "ablation/vgg_space": "vgg"}


def test_ablation_rows_share_a_group_and_differ_in_tags(compose_cfg):
    cfgs = {name: compose_cfg([f"experiment={name}"]) for name in ABLATION_SPACES}
    assert {c.wandb_group for c in cfgs.values()} == {"table4"}
    assert len({tuple(c.tags) for c in cfgs.values()}) == len(cfgs)
    assert [cfgs[f"ablation/enhance_d{d}"].loss.spaces.disc.space.degree for d in (2, 6, 10)] == [2, 6, 10]
    assert set(cfgs["ablation/refiner_pixel_only"].loss.spaces) == {"pixel"}


@pytest.mark.parametrize("experiment", sorted(ABLATION_SPACES))
def test_fast_dev_run_of_every_ablation(experiment, compose_cfg, cbsd_shards, tmp_path):
    space = ABLATION_SPACES[experiment]
    overrides = [f"experiment={experiment}", *shard_overrides(cbsd_shards), "debug=fast", *TINY,
                 f"export_dir={tmp_path / 'export'}", "device_simulation=null"]  # no hub VAE offline
    if space:  # exercise the ablated space in the single step (skip its warm-up)
        overrides.append(f"loss.spaces.{space}.warmup_steps=0")
    cfg = compose_cfg(overrides)
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    logged = set(trainer.callback_metrics)
    if space and space != "vgg":  # vgg's backbone is not cached here: that term is dropped (warned)
        assert f"train/{space}/l1" in logged and f"train/{space}/d_loss" in logged
    assert "train/pixel/l1" in logged


def test_device_simulation_runs_in_training(compose_cfg, cbsd_shards, tmp_path):
    taef2 = ROOT.parent / "shared" / "weights" / "taef2"
    if not taef2.is_dir():
        pytest.skip(f"TAEF2 weights not found at {taef2}")
    cfg = compose_cfg([*shard_overrides(cbsd_shards), "debug=fast", *TINY, f"export_dir={tmp_path / 'export'}",
                       f"device_simulation.autoencoder={taef2}", "simulation.texture.p=1", "simulation.texture.vae_p=1"])
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    assert module.device_simulation.applied >= 2  # the train batch and the val batch were round-tripped


def test_fast_dev_run_of_the_demo_experiment(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=demo", "debug=fast", *TINY, f"export_dir={tmp_path / 'export'}"])
    metrics = train(cfg)
    assert (Path(metrics["export_dir"]) / "model.safetensors").is_file()


def test_training_step_supervises_the_seam_prior_scale_when_asked(compose_cfg, tmp_path):
    """With loss.seam_scale.weight > 0 the one generator forward also returns the prior's parts and
    the term is logged; the untrained refiner's scale over the edit is exactly 1."""
    cfg = compose_cfg(["experiment=demo", "debug=fast", *TINY, "model.refiner.seam_prior=true",
                       "loss.seam_scale.weight=64", f"export_dir={tmp_path / 'export'}"])
    datamodule, module, trainer = build(cfg)
    assert module.loss.wants_prior_parts
    trainer.fit(module, datamodule=datamodule)
    logged = trainer.callback_metrics
    assert logged["train/seam_scale"].item() == pytest.approx(1.0)
    assert 0.0 < logged["train/seam_scale_loss"].item() < 1.0
    assert -0.5 <= logged["train/seam_scale_target"].item() <= 2.0
    without_prior = compose_cfg(["experiment=demo", "debug=fast", *TINY, "model.refiner.seam_prior=false",
                                 "loss.seam_scale.weight=64"])
    with pytest.raises(Exception, match="set model.refiner.seam_prior=true"):  # at build, not after a step
        build(without_prior)


def test_fast_dev_run_on_shards(compose_cfg, cbsd_shards):
    cfg = compose_cfg([*shard_overrides(cbsd_shards), "debug=fast", *TINY])
    datamodule, module, trainer = build(cfg)
    before = [p.detach().clone() for p in module.refiner.parameters()]
    trainer.fit(module, datamodule=datamodule)
    assert int(module.step_count) == 1
    changed = sum(not torch.equal(a, b) for a, b in zip(before, module.refiner.parameters()))
    assert changed > 0


def test_training_resumes_and_export_round_trips(compose_cfg, cbsd_shards, tmp_path, cbsd68_photos):
    common = [*shard_overrides(cbsd_shards), *TINY, "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
              "evaluate=true", f"export_dir={tmp_path / 'exported'}"]
    cfg = compose_cfg(common)
    metrics = train(cfg)
    assert {"val/input/masked_l1", "val/paste_back/masked_l1", "val/refiner/masked_l1", "val/refiner/psnr"} <= set(metrics)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert last.is_file()

    # resume: the step counter and the optimizer state continue
    cfg2 = compose_cfg([*common, "trainer.max_epochs=2", f"ckpt_path={last}"])
    datamodule, module, trainer = build(cfg2)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last))
    assert int(module.step_count) == 6

    # export via the CLI, reload with no Lightning/Hydra, compare bitwise with the EMA module
    out_dir = tmp_path / "cli_export"
    assert export_main([str(last), str(out_dir)]) == 0
    assert (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file()
    ema = refiner_from_checkpoint(last)
    refiner = Refiner.from_pretrained(out_dir)
    image = load_photo(cbsd68_photos[10], 48)[None]
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 10:30, 12:40] = 1
    with torch.no_grad():
        expected = ema(image, mask)
    got = refiner(image, mask, region="full")  # the raw network; region="edit" pastes the background back
    assert torch.equal(got, expected)
    assert not torch.equal(got, image)  # trained: not the identity any more


def test_export_cli_rejects_non_checkpoints(tmp_path, capsys):
    assert export_main([str(tmp_path / "missing.ckpt"), str(tmp_path / "out")]) == 2
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"state_dict": {}}, bogus)
    assert export_main([str(bogus), str(tmp_path / "out")]) == 2
    assert "not a PixPerfect training checkpoint" in capsys.readouterr().err


def test_two_process_cpu_ddp_training(cbsd_shards, tmp_path):
    out = tmp_path / "ddp"
    args = [sys.executable, "train.py", *shard_overrides(cbsd_shards), *TINY, "trainer=ddp_cpu", "data.batch_size=4",
            "data.resampled=true", "data.epoch_length=6", "trainer.max_epochs=1", "evaluate=false",
            f"paths.output_dir={out}", f"hydra.run.dir={out}", f"paths.cache_dir={tmp_path / 'cache'}",
            "+callbacks.checksum._target_=tests.helpers.ParamChecksum", f"+callbacks.checksum.out_dir={out / 'sums'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ends = [(out / "sums" / f"end_rank{r}.txt").read_text() for r in (0, 1)]
    starts = [(out / "sums" / f"start_rank{r}.txt").read_text() for r in (0, 1)]
    assert ends[0] == ends[1]  # DDP kept both replicas identical
    assert starts[0] == starts[1] and ends[0] != starts[0]  # … and they trained
    assert ends[0].split()[-1] == "3"  # 6 samples per rank / 2 per device = 3 steps
    assert (out / "refiner" / "model.safetensors").is_file()


def test_wandb_offline_run_records_metrics_and_images(compose_cfg, cbsd_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    cfg = compose_cfg([*shard_overrides(cbsd_shards), *TINY, "logger=wandb", "trainer.max_epochs=1",
                       "+trainer.limit_train_batches=2", "trainer.log_every_n_steps=1", "module.image_log_every=1",
                       "evaluate=false",
                       f"export_dir={tmp_path / 'export'}"])
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    import wandb

    run = trainer.logger.experiment
    assert run.summary.get("train/pixel/l1") is not None
    assert any(k.startswith("params/refiner_M") for k in run.config.keys())
    wandb.finish()
    offline = list(Path(cfg.paths.output_dir).rglob("*.wandb"))
    assert offline and offline[0].stat().st_size > 0
    media = {p.parent.name for p in Path(cfg.paths.output_dir).rglob("media/images/*/*.png")}
    assert {"train", "val", "simulation"} <= media  # sample grids and the start-of-training preview
