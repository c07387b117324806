"""export: a hub-style folder (config.json + model.safetensors + README.md model card) from a checkpoint,
still loadable with from_pretrained; bad inputs are one line and exit 2; nothing half-written."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from pixperfect import Refiner
from pixperfect.export import main as export_main
from pixperfect.export import metrics_table, model_card, results_markdown
from pixperfect.models import CMGANRefiner
from helpers import TINY_REFINER as TINY, tiny_refiner

VAL = {"val/input/masked_l1": 0.0622, "val/paste_back/masked_l1": 0.0600, "val/refiner/masked_l1": 0.0591,
       "val/input/psnr": 31.5, "val/refiner/psnr": 32.14}


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as train.py leaves it: .hydra/{config,hydra}.yaml and checkpoints/last.ckpt."""
    model = tiny_refiner()
    run = tmp_path / "runs" / "2026-01-01_00-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    config = {"task_name": "demo", "seed": 42, "trainer": {"max_epochs": 10},
              "data": {"resolution": 64, "batch_size": 16, "train_shards": "/data/train/shard-{000000..000009}.tar"},
              "simulation": {"color_shift": {"p": 0.8}, "texture": {"p": 0.5}, "content_band": None,
                             "boundary": {"p": 1.0}},
              "module": {"seed": "${seed}"}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {"experiment": "demo", "model": "cmgan_tiny", "simulation": "demo",
                                           "data": "shards", "loss": "pixel"}}}}))
    state = {f"ema.module.{k}": v for k, v in model.state_dict().items()}
    state["step_count"] = torch.tensor(640)
    ckpt = {"state_dict": state, "epoch": 9, "global_step": 1280,
            "pixperfect": {"refiner_class": "pixperfect.models.refiner.CMGANRefiner",
                           "refiner_config": dict(model.config), "val_results": VAL}}
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    return run, model.eval()


def test_export_writes_a_model_card_and_stays_loadable(run_dir, tmp_path):
    run, model = run_dir
    results = tmp_path / "eval.json"
    results.write_text(json.dumps({"benchmark/colour": {"input": 0.05, "refiner": 0.031},
                                   "benchmark/texture": {"input": 0.02, "refiner": 0.019}}))
    out = tmp_path / "exported"
    assert export_main([str(run / "checkpoints" / "last.ckpt"), str(out), "--results", str(results)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    x, m = torch.rand(1, 3, 24, 40), torch.zeros(1, 1, 24, 40)
    m[..., 5:15, 5:20] = 1
    with torch.no_grad():
        assert torch.equal(Refiner.from_pretrained(out)(x, m, region="full"), model(x, m))

    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "apache-2.0" and front["library_name"] == "pixperfect"
    n_params = sum(p.numel() for p in model.parameters())
    assert f"{n_params:,} parameters" in card and f"{n_params / 1e6:.2f}M" in card
    for fact in ("| experiment | demo |", "| model config | cmgan_tiny |", "| training steps (batches) | 640 |",
                 "| epochs | 9 |", "| resolution | 64 |", "color_shift (p=0.8), texture (p=0.5), boundary (p=1.0)",
                 "/data/train/shard-{000000..000009}.tar"):
        assert fact in card, fact
    assert "content_band" not in card  # switched off in that run
    assert "| refiner | 0.0591 | 32.1400 |" in card and "| paste-back | 0.0600 |" in card
    assert "| benchmark/colour | 0.0500 | 0.0310 |" in card
    assert "does not fix semantics" in card


def test_card_without_run_config_or_results():
    card = model_card(CMGANRefiner(**TINY))
    assert "Not recorded (exported without its run's config)." in card and "## Evaluation" not in card
    assert metrics_table({"val/refiner/masked_l1": 0.5, "train/loss": 1.0}) == \
        "| output | masked_l1 |\n|---|---:|\n| refiner | 0.5000 |"
    assert results_markdown("| a | b |\n|---|---|\n") == "| a | b |\n|---|---|"
    assert results_markdown({"masked_l1_ratio": 0.7}) == "| metric | value |\n|---|---:|\n| masked_l1_ratio | 0.7000 |"


@pytest.mark.parametrize("kind", ["png", "truncated", "missing"])
def test_export_of_a_non_checkpoint_is_one_line(run_dir, tmp_path, capsys, kind):
    run, _ = run_dir
    src = tmp_path / "bad.ckpt"
    if kind == "png":
        from PIL import Image

        src = tmp_path / "photo.png"
        Image.new("RGB", (8, 8)).save(src)
    elif kind == "truncated":
        data = (run / "checkpoints" / "last.ckpt").read_bytes()
        src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert export_main([str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert ("does not exist" if kind == "missing" else "cannot read") in err[0]
    assert not out.exists()  # nothing half-written


def test_export_under_a_file_is_one_line(run_dir, tmp_path, capsys):
    run, _ = run_dir
    (tmp_path / "afile").write_text("x")
    assert export_main([str(run / "checkpoints" / "last.ckpt"), str(tmp_path / "afile" / "out")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def _same_outputs(folder, model) -> bool:
    x, m = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.zeros(1, 1, 16, 16)
    m[..., 4:12, 4:12] = 1
    with torch.no_grad():
        return torch.equal(Refiner.from_pretrained(folder)(x, m, region="full"), model(x, m))


def test_exporting_over_another_refiner_keeps_it_beside(tmp_path, capsys):
    """Nothing written is lost: a second, different export to the same folder moves the first's files
    to ``<name>.replaced-<time>`` (both still load as themselves); the same refiner again rewrites its
    files and keeps nothing extra; no staging folder is left."""
    from pixperfect.export import export_refiner
    first, second = tiny_refiner(0).eval(), tiny_refiner(1).eval()
    out = tmp_path / "refiner"
    export_refiner(first, out)
    export_refiner(first, out)  # a deterministic rerun: the same weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refiner"]
    export_refiner(second, out)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("refiner.replaced-")]
    assert len(kept) == 1 and f"of another refiner; kept in {kept[0]}" in capsys.readouterr().out
    assert sorted(p.name for p in kept[0].iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert _same_outputs(out, second) and _same_outputs(kept[0], first)
    t = (kept[0] / "model.safetensors").stat().st_mtime
    os.utime(out / "model.safetensors", (t, t))  # weights of the same second: the name takes a number
    export_refiner(first, out)
    assert (tmp_path / f"{kept[0].name}-1").is_dir() and _same_outputs(tmp_path / f"{kept[0].name}-1", second)
    assert _same_outputs(out, first)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_an_export_that_fails_while_writing_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    from pixperfect import export
    out = tmp_path / "refiner"
    export.export_refiner(tiny_refiner(0).eval(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(export, "model_card", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        export.export_refiner(tiny_refiner(1).eval(), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refiner"]


def test_other_files_stay_where_they_are(tmp_path, monkeypatch):
    """A folder of other files gets the export's files added; exporting a different refiner there
    moves only the export's three files aside, never the folder (not even the working directory)."""
    from pixperfect.export import export_refiner
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    export_refiner(tiny_refiner(0).eval(), ".")
    assert sorted(p.name for p in work.iterdir()) == ["README.md", "config.json", "model.safetensors", "notes.txt"]
    export_refiner(tiny_refiner(1).eval(), ".")
    assert sorted(p.name for p in work.iterdir()) == ["README.md", "config.json", "model.safetensors", "notes.txt"]
    assert (work / "notes.txt").read_text() == "mine" and _same_outputs(work, tiny_refiner(1).eval())
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("work.replaced-")]
    assert _same_outputs(kept, tiny_refiner(0).eval()) and not (kept / "notes.txt").exists()


def test_the_same_refiner_is_recognised_by_content_not_file_bytes(tmp_path):
    """safetensors writes its metadata in hash-map order, so two saves of one refiner can differ as
    files: a header with the metadata keys the other way round is still the same export; a weight
    changed from 0.0 to −0.0 (equal as numbers, not as bits) is not, nor is an unreadable file."""
    import struct

    from safetensors.torch import load_file, save_file

    from pixperfect.export import _same_export, export_refiner
    a, b = tmp_path / "a", tmp_path / "b"
    export_refiner(tiny_refiner(0).eval(), a)
    export_refiner(tiny_refiner(0).eval(), b)
    raw = (a / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    assert len(header["__metadata__"]) >= 2
    header["__metadata__"] = dict(reversed(list(header["__metadata__"].items())))
    text = json.dumps(header, separators=(",", ":")).encode().ljust(n)  # the same length: offsets unchanged
    (b / "model.safetensors").write_bytes(raw[:8] + text + raw[8 + n:])
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()
    assert _same_export(a, b)
    tensors = load_file(a / "model.safetensors")
    zero = next(k for k, v in tensors.items() if (v == 0).any())
    tensors[zero] = torch.where(tensors[zero] == 0, torch.tensor(-0.0), tensors[zero])
    save_file(tensors, b / "model.safetensors", metadata=header["__metadata__"])
    assert not _same_export(a, b)
    (b / "model.safetensors").write_bytes(b"not a safetensors file")
    assert not _same_export(a, b)  # unreadable: set aside, never taken for the same


def test_an_incomplete_export_is_kept_too_and_the_version_of_diffusers_does_not_matter(tmp_path, capsys):
    """Weights without their config (a half-copied folder) are not overwritten: they move aside.
    A config that differs only in the diffusers version that wrote it is the same refiner."""
    from pixperfect.export import export_refiner
    out = tmp_path / "refiner"
    export_refiner(tiny_refiner(0).eval(), out)
    (out / "config.json").unlink()
    old = (out / "model.safetensors").read_bytes()
    export_refiner(tiny_refiner(0).eval(), out)
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("refiner.replaced-")]
    assert sorted(p.name for p in kept.iterdir()) == ["README.md", "model.safetensors"]
    assert (kept / "model.safetensors").read_bytes() == old
    assert "held model.safetensors, README.md of another refiner" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "_diffusers_version": "0.0.1"}))
    export_refiner(tiny_refiner(0).eval(), out)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("refiner.replaced-")]) == 1


def test_set_aside_stays_inside_where_it_cannot_go_beside(tmp_path, monkeypatch, capsys):
    """A parent that is not writable, or another filesystem: the earlier export is kept inside the
    folder as ``replaced-<time>`` (renamed, never copied), not lost and not an error."""
    from pixperfect import export
    out = tmp_path / "refiner"
    export.export_refiner(tiny_refiner(0).eval(), out)
    real_rename = os.rename

    def no_sibling(src, dst):
        if Path(dst).parent != Path(src).parent.parent or Path(dst).parent == out:
            return real_rename(src, dst)
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(export.os, "rename", no_sibling)
    export.export_refiner(tiny_refiner(1).eval(), out)
    (kept,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert _same_outputs(kept, tiny_refiner(0).eval()) and _same_outputs(out, tiny_refiner(1).eval())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refiner"]
    assert f"kept in {kept}" in capsys.readouterr().out
