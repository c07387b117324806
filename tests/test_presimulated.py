"""Simulate once, train many (data.presimulated): what is written is what the simulation made, what is
read is what was written, in the sampler's order, and train.py trains on it."""

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import ROOT, split_shards
from data.errors import DataError
from data.presimulated import EpochSampler, PresimulatedDataModule, load_arrays, write
from pixperfect.training.run import build

SMALL = ["model=cmgan_tiny", "data.resolution=32", "data.num_workers=0", "loss.lpips.allow_missing_weights=true"]


@pytest.fixture(scope="module")
def shards(cbsd68_photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("presim_shards")
    split_shards(root, {"train": cbsd68_photos[:4], "val": cbsd68_photos[4:6]}, maxcount=4)
    return [f"data.train_shards='{root / 'train' / 'shard-000000.tar'}'",
            f"data.val_shards='{root / 'val' / 'shard-000000.tar'}'"]


def live_datamodule(compose_cfg, shards):
    cfg = compose_cfg(["experiment=cpu_small", *shards, *SMALL, "data.batch_size=4", "data.val_images=2",
                       "data.val_per_image=2", "data.shuffle_buffer=4", "data.pin_memory=false"])
    return instantiate(cfg.data, simulation=instantiate(cfg.simulation))


@pytest.fixture
def written(compose_cfg, shards, tmp_path):
    folder = tmp_path / "presim"
    info = write(folder, live_datamodule(compose_cfg, shards), n=10, meta={"overrides": ["experiment=cpu_small"]})
    return folder, info


def test_written_samples_are_the_simulated_ones(written, compose_cfg, shards):
    folder, info = written
    assert (info["n"], info["n_val"], info["resolution"]) == (10, 4, 32)
    # the same seeded stream, drawn again: 10 samples = two batches of 4 and half of the third
    dm = live_datamodule(compose_cfg, shards)
    dm.setup("fit")
    drawn = {k: [] for k in ("x_gt", "x_gen", "mask", "alpha", "cast")}
    for batch in dm.train_dataloader():
        for k in drawn:
            drawn[k].append(batch[k])
        if sum(b.shape[0] for b in drawn["x_gen"]) >= 10:
            break
    arrays = load_arrays(folder)
    for k, parts in drawn.items():
        if k == "cast":
            continue
        expected = torch.cat(parts)[:10].half().float()
        assert torch.equal(torch.from_numpy(np.asarray(arrays[k])).float(), expected), k
    assert (arrays["x_gen"] != arrays["x_gt"]).any()  # artifacts were simulated, not a copy
    assert np.array_equal(arrays["cast"], torch.cat([b for b in drawn["cast"]])[:10].numpy())
    val = load_arrays(folder / "val", folder)
    assert torch.equal(torch.from_numpy(np.asarray(val["x_gen"])).float(),
                       torch.stack([s["x_gen"] for s in dm.val_set.samples]).half().float())


def test_batches_follow_the_sampler_and_the_data_module_checks_the_folder(written):
    folder, _ = written
    dm = PresimulatedDataModule(str(folder), batch_size=4, num_workers=0, epoch_length=8, seed=3, resolution=32,
                                shuffle_buffer=64)  # a live-data setting: accepted, ignored
    dm.set_epoch(2)
    order = list(dm.sampler)
    assert order[:4] != sorted(order[:4]) or order[4:] != sorted(order[4:])  # the reordering is exercised
    batches = list(dm.train_dataloader())
    assert [b["x_gen"].shape for b in batches] == [torch.Size([4, 3, 32, 32])] * 2
    arrays = load_arrays(folder)
    for b, idx in zip(batches, (order[:4], order[4:])):
        assert b["x_gen"].dtype == torch.float32 and b["vae"].dtype == torch.bool
        assert torch.equal(b["x_gen"], torch.from_numpy(np.asarray(arrays["x_gen"][idx])).float())
    assert len(dm.val_set) == 4
    with pytest.raises(DataError, match="data.resolution=64 but .* holds 32"):
        PresimulatedDataModule(str(folder), resolution=64)
    with pytest.raises(DataError, match="not a presimulated set"):
        PresimulatedDataModule(str(folder / "nothing"))
    with pytest.raises(DataError, match="holds no whole batch"):
        PresimulatedDataModule(str(folder), batch_size=16)
    with pytest.raises(DataError, match="data.epoch_length must be"):
        PresimulatedDataModule(str(folder), epoch_length=0)
    (folder / "meta.json").unlink()  # what an interrupted write leaves: preallocated arrays, no meta.json
    with pytest.raises(DataError, match="write did not finish"):
        PresimulatedDataModule(str(folder))


def test_epoch_sampler_is_a_seeded_permutation_per_epoch():
    s = EpochSampler(5, length=12, seed=1)
    first = list(s)
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:10]) == list(range(5))
    assert len(first) == len(s) == 12 and list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    assert sorted(EpochSampler(7, seed=0)) == list(range(7))


def test_train_py_trains_on_a_presimulated_folder(written, compose_cfg, tmp_path):
    folder, _ = written
    cfg = compose_cfg(["experiment=demo", "data=presimulated", f"data.path={folder}", "data.batch_size=2",
                       "data.pin_memory=false", "debug=fast", *SMALL, f"export_dir={tmp_path / 'export'}"])
    datamodule, module, trainer = build(cfg)
    assert isinstance(datamodule, PresimulatedDataModule)
    trainer.fit(module, datamodule=datamodule)
    assert int(module.step_count) == 1
    assert "train/pixel/l1" in trainer.callback_metrics and "val/masked_l1" in trainer.callback_metrics


def test_cli_refuses_to_overwrite_and_bad_counts(written, tmp_path):
    folder, _ = written
    for args, message in (([str(folder), "--n", "4"], "exists (a file, or a folder that is not empty)"),
                          ([str(tmp_path / "new"), "--n", "0"], "--n must be >= 1"),
                          ([str(tmp_path / "new"), "--n", "4", "data=presimulated"], "name the data")):
        out = subprocess.run([sys.executable, "-m", "data.presimulated", *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_a_resumed_epoch_continues_after_the_consumed_batches(written):
    """The data module's state (epoch, batches consumed) brings a resumed run to the very next batch of
    the same permutation, and the epoch after it starts whole."""
    folder, _ = written
    make = lambda: PresimulatedDataModule(str(folder), batch_size=2, num_workers=0, epoch_length=10, seed=5)
    full = make()
    full.set_epoch(1)
    reference = [b["x_gen"] for b in full.train_dataloader()]
    assert len(reference) == 5
    first = make()
    first.set_epoch(1)
    for batch in itertools.islice(first.train_dataloader(), 2):
        first.on_before_batch_transfer(batch, 0)  # what Lightning calls as each batch reaches the model
    state = first.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    resumed = make()
    resumed.load_state_dict(state)
    rest = [b["x_gen"] for b in resumed.train_dataloader()]
    assert len(rest) == 3 and all(torch.equal(a, b) for a, b in zip(rest, reference[2:]))
    resumed.set_epoch(2)
    assert len(list(resumed.train_dataloader())) == 5
