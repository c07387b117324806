"""Every command in README.md's ```bash blocks, and in those of the pages under docs/, runs as written.

The commands are read from the README and docs/*.md (nothing is copied here). Each is tokenised as the shell
would (``shlex``), matched by exactly one rule below, rewritten by that rule, and run from the
repository root. What a rule may change, and nothing else:

- ``PATHS``: the README's placeholder paths (``/data/...``, ``PHOTOS``, ``edit.png``, ...) become
  tiny test data (CBSD68 shards and photos, a 1-step checkpoint, a random-weight SD pipeline) and
  relative outputs go to a temporary folder;
- a Hydra command that needs a GPU, a cluster or a hub model is composed like ``--cfg job`` would
  (in process: the same override grammar and config tree, no interpreter start-up); a multirun
  of that kind is composed once per job of its sweep (``--cfg`` and ``-m`` exclude each other);
- a Hydra multirun gets small-and-fast overrides appended (``TINY_MULTIRUN``: ``debug=fast``, a
  tiny model, TAEF2 as the device autoencoder) and runs for real;
- ``make_shards --skip N`` skips 2 (the tiny folder has 4 photos);
- ``learnability`` measures at steps 0 and 2 of a tiny model and keeps one ``--set`` (every set
  path maps to the one tiny set; ``--plot`` selected alone with ``-k`` first makes the curves it draws);
  ``fit_probe`` runs 2 steps of a tiny model, measuring each (with ``--set``, a positive ratio per family too);
- ``data.demo OUT`` writes to a temporary folder (OUT maps to the tiny photo folder for ``make_set``);
- ``head_activity --refiner NAME=DIR`` reads the README's export of the tiny checkpoint for every DIR;
- ``colour_bound`` scores its oracle rows on the tiny set (none may score above the input overall);
- ``data.presimulated`` writes 4 samples at 32² (no workers); ``slurm/table4_one_gpu.sh`` runs two of its
  rows (``pixel d2x``) on the CPU: 8 presimulated samples, a tiny model, steps 0 and 1, the tiny set as
  both held-out sets, then the pooling row;
- ``make X`` runs ``make -n X`` (the target exists; it would install and run the whole suite);
- PILOT's CLI drops ``[optional]`` synopsis groups and runs 4 steps on the random-weight pipeline;
- benchmarks run for real.

Fast by default: the make dry runs, make_shards, the ``--cfg job`` compositions. Slow-marked (they
train, load pipelines or benchmark; ~5 min together on 2 cores): the Table-4 multirun, preview,
export/refine, the PILOT CLI and the benchmarks (``pytest -m slow tests/test_readme_commands.py``).

A command that no rule handles fails ``test_every_readme_command_has_a_rule`` with its text: add a
rule here (or make the command runnable) when you add one to the README.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CBSD68, ROOT

README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]  # the README's long measurements live in docs/
TAEF2 = ROOT.parent / "shared" / "weights" / "taef2"
TINY = ["model=cmgan_tiny", "data.resolution=32", "data.batch_size=2", "data.val_images=2",
                 "data.val_per_image=1", "data.shuffle_buffer=4", "data.pin_memory=false", "trainer=cpu",
                 "simulation.texture.p=1", "simulation.texture.vae_p=1",  # every sample takes the TAEF2 round trip
                 f"device_simulation.autoencoder={TAEF2}"]
TINY_MULTIRUN = ["debug=fast", *TINY]


@dataclass
class Command:
    text: str        # as in the README (continuations joined)
    heading: str     # the section it is in
    block: int       # index of its ```bash block, counted over every document in turn
    source: str = "README.md"  # the document it is in

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    def __str__(self) -> str:
        return f"[{self.source}: {self.heading}] {self.text}"


def readme_commands(text: str | None = None, source: str = "README.md", first_block: int = 0) -> list[Command]:
    """The commands of one document's text, or (no text) of README.md and every docs/*.md page."""
    if text is None:
        commands = []
        for path in DOCUMENTS:
            commands += readme_commands(path.read_text(), str(path.relative_to(ROOT)),
                                        commands[-1].block + 1 if commands else 0)
        return commands
    commands, heading, block, in_block, pending = [], "", first_block - 1, False, ""
    for line in text.splitlines():
        if not in_block and line.startswith("#"):
            heading = line.lstrip("# ").strip()
        if line.strip().startswith("```"):
            if in_block:
                in_block = False
            elif line.strip() == "```bash":
                in_block, block = True, block + 1
            continue
        if in_block:
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if shlex.split(pending, comments=True):
                commands.append(Command(" ".join(pending.split()), heading, block, source))
            pending = ""
    return commands


# ------------------------------------------------------------------ tiny stand-ins
@pytest.fixture(scope="module")
def env(tmp_path_factory, cbsd68_photos):
    """Everything the README's placeholders stand for, made small; returns a substitution table."""
    from data.make_shards import make_shards

    tmp = tmp_path_factory.mktemp("readme")
    (tmp / "out").mkdir()  # stands for the repo folders the README writes into (docs/ …)
    photos, photos_val = tmp / "photos", tmp / "photos_val"
    for folder, chosen in ((photos, cbsd68_photos[20:24]), (photos_val, cbsd68_photos[24:26])):
        folder.mkdir()
        for p in chosen:
            (folder / p.name).symlink_to(p)
    train_shards, val_shards = tmp / "fixture_shards" / "train", tmp / "fixture_shards" / "val"
    make_shards(photos, train_shards, maxcount=2, quiet=True)
    make_shards(photos_val, val_shards, maxcount=2, quiet=True)
    return {"tmp": tmp, "photos": photos, "photos_val": photos_val,
            "train_pattern": str(train_shards / "shard-{000000..000001}.tar"),
            "val_shard": str(val_shards / "shard-000000.tar")}


PATHS = [  # (regex on one token, replacement: a function of the env table)
    (r"/data/shards/train/shard-\{\d+\.\.\d+\}\.tar", lambda e: e["train_pattern"]),
    (r"/data/shards/val/shard-\d+\.tar", lambda e: e["val_shard"]),
    (r"^/data/photos_val$", lambda e: str(e["photos_val"])),
    (r"^/data/photos$", lambda e: str(e["photos"])),
    (r"^/data/shards/(train|val)$", lambda e: str(e["tmp"] / "made_shards" / "{0}")),
    (r"^\.cache/shards/(\w+)$", lambda e: str(e["tmp"] / "made_shards" / "{0}")),
    (r"\.cache/shards/\w+/shard-\{\d+\.\.\d+\}\.tar", lambda e: e["train_pattern"]),
    (r"^\.\./shared/weights/taef2$", lambda e: str(TAEF2)),
    (r"^input\.folder=PHOTOS$", lambda e: f"input.folder={e['photos']}"),
    (r"^output\.dir=OUT$", lambda e: f"output.dir={e['tmp'] / 'generated'}"),
    (r"val-\{000000\.\.000003\}\.tar", lambda e: e["train_pattern"]),
    (r"^logs/train/runs/<run>/checkpoints/last\.ckpt$", lambda e: str(e["ckpt"])),
    (r"^outputs/my_refiner$", lambda e: str(e["tmp"] / "my_refiner")),
    (r"^(edit|in)\.png$", lambda e: str(e["image"])),
    (r"^mask\.png$", lambda e: str(e["mask"])),
    (r"^photo\.png$", lambda e: str(e["image"])),  # the unedited original: the edit's file stands in
    (r"^(edits|masks)/$", lambda e: str(e["tmp"] / "{0}")),  # folders of edits and of masks with the same names
    (r"^refined/$", lambda e: str(e["tmp"] / "out" / "refined")),
    (r"^docs/(\w+\.png)$", lambda e: str(e["tmp"] / "out" / "{0}")),  # never overwrite the README's figures
    (r"^((grid|refined|out)\.png)$", lambda e: str(e["tmp"] / "out" / "{0}")),
    (r"^DIR_OR_HUB_ID$", lambda e: str(e["sd"])),
    (r"^input\.folder=COCO_IMAGES$", lambda e: f"input.folder={e['photos']}"),
    (r"^\.\./shared/data/cbsd68$", lambda e: str(e["photos"])),
    (r"^\.cache/demo_photos/\w+$", lambda e: str(e["photos"])),  # a folder of photos: the tiny one
    (r"^eval_sets/\w+$", lambda e: str(e["tmp"] / "eval_sets" / "tiny")),     # make_set's output
    (r"^set=eval_sets/\w+$", lambda e: f"set={e['tmp'] / 'eval_sets' / 'tiny'}"),  # any set: the tiny one
    (r"^set=\.cache/\w+$", lambda e: f"set={e['tmp'] / 'eval_sets' / 'tiny'}"),   # the demo's own set: the tiny one
    (r"^\.cache/\w+$", lambda e: str(e["tmp"] / "eval_sets" / "tiny")),
    (r"(?<=: )outputs/[\w/]+", lambda e: str(e["tmp"] / "my_refiner")),  # refiners={name: outputs/…}
    (r"^out_dir=outputs/eval/(\w+)$", lambda e: f"out_dir={e['tmp'] / 'eval_out' / '{0}'}"),
    (r"^outputs/learn/([\w.]+)$", lambda e: str(e["tmp"] / "out" / "learn" / "{0}")),
    (r"^input\.masks=COCO_MASKS$", lambda e: f"input.masks={e['tmp'] / 'coco_masks'}"),
    (r"^outputs/presim_(\w+)$", lambda e: str(e["tmp"] / "out" / "presim_{0}")),
]


def substitute(argv: list[str], env: dict) -> list[str]:
    """Apply every ``PATHS`` rule to every occurrence in every token (``{0}``: the rule's group 1)."""
    def replace(repl):
        def one(m: re.Match) -> str:
            value = repl(env)
            return value.replace("{0}", m.group(1)) if "{0}" in value else value
        return one

    out = []
    for token in argv:
        for pattern, repl in PATHS:
            token = re.sub(pattern, replace(repl), token)
        out.append(token)
    return out


def python(argv: list[str]) -> list[str]:
    return [sys.executable, *argv[1:]] if argv[0] in ("python", "python3") else argv


def is_hydra_multirun(argv):
    return argv[:2] == ["python", "train.py"] and ("-m" in argv or "--multirun" in argv)


def is_train(argv):
    return argv[:2] == ["python", "train.py"]


def is_module(name):
    return lambda argv: argv[:3] == ["python", "-m", name]


# (name, matches(argv), marks); the runners below implement each name
RULES = [
    ("make_dry_run", lambda a: a[0] == "make", ()),
    ("make_shards", is_module("data.make_shards"), ()),
    ("demo_photos", is_module("data.demo"), ()),
    ("train_multirun", is_hydra_multirun, (pytest.mark.slow,)),  # Table 4: six rows, ~1-2 min on 2 cores
    ("train_cfg_job", lambda a: is_train(a) and not is_hydra_multirun(a), ()),  # GPU/cluster/hub: composed only
    ("preview", is_module("simulation.preview"), (pytest.mark.slow,)),  # ~10 s each
    ("export", is_module("pixperfect.export"), (pytest.mark.slow,)),    # needs a trained checkpoint: ~20 s
    ("refine", is_module("pixperfect.refine"), (pytest.mark.slow,)),
    ("pilot_cli", is_module("pixperfect.pilot"), (pytest.mark.slow,)),  # loads a pipeline: ~50 s
    ("generate_cfg_job", is_module("evaluation.generate"), ()),
    ("make_set", is_module("evaluation.make_set"), (pytest.mark.slow,)),
    ("calibrate", is_module("evaluation.calibrate"), (pytest.mark.slow,)),
    ("evaluate", is_module("evaluation.evaluate"), (pytest.mark.slow,)),  # needs the set and a refiner
    ("bench", is_module("evaluation.bench"), (pytest.mark.slow,)),
    ("learnability", is_module("evaluation.learnability"), (pytest.mark.slow,)),  # trains: 2 tiny steps
    ("fit_probe", is_module("evaluation.fit_probe"), (pytest.mark.slow,)),  # L1 only: 2 tiny steps
    ("amplification", is_module("evaluation.amplification"), (pytest.mark.slow,)),  # fits f on the tiny set
    ("prior_sweep", is_module("evaluation.prior_sweep"), (pytest.mark.slow,)),  # seam-offset variants, tiny set
    ("head_activity", is_module("evaluation.head_activity"), (pytest.mark.slow,)),  # an export's parts, tiny set
    ("colour_bound", is_module("evaluation.colour_bound"), (pytest.mark.slow,)),  # oracle colour fits, tiny set
    ("presimulate", is_module("data.presimulated"), (pytest.mark.slow,)),  # 4 samples at 32²
    ("table4_one_gpu", lambda a: "slurm/table4_one_gpu.sh" in a, (pytest.mark.slow,)),  # two rows, 1 step, CPU: ~2 min
]


def rule_for(command: Command) -> str | None:
    names = [name for name, matches, _ in RULES if matches(command.argv)]
    assert len(names) <= 1, f"README command {command} matches several rules: {names}"
    return names[0] if names else None


COMMANDS = readme_commands()


def test_readme_has_commands_and_the_parser_joins_continuations():
    assert len(COMMANDS) >= 10
    assert {"README.md", "docs/seam_prior.md", "docs/learning_diagnostics.md"} <= {c.source for c in COMMANDS}
    assert len({c.block for c in COMMANDS}) == len({(c.source, c.block) for c in COMMANDS})  # no block number on two pages
    sample = readme_commands("# S\n```bash\npython a.py x \\\n    'y z'  # note\n```\n```python\nnot_this()\n```\n")
    assert [(c.text, c.heading, c.argv) for c in sample] == [("python a.py x 'y z' # note", "S", ["python", "a.py", "x", "y z"])]


def test_every_readme_command_has_a_rule():
    missing = [str(c) for c in COMMANDS if rule_for(c) is None]
    assert not missing, ("README commands that tests/test_readme_commands.py has no rule for (add a rule, or make "
                         "the command runnable as written):\n" + "\n".join(missing))


def run(argv: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run(python(argv), cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def full_env(env, tmp_path_factory):
    """Adds a 1-step checkpoint, an edit image + mask and a random-weight SD pipeline folder."""
    import numpy as np
    from PIL import Image

    tmp = env["tmp"]
    Image.open(next(iter(sorted(env["photos"].iterdir())))).convert("RGB").crop((0, 0, 64, 48)).save(tmp / "edit.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:50] = 255
    Image.fromarray(mask).save(tmp / "mask.png")
    for folder, src in (("edits", "edit.png"), ("masks", "mask.png")):
        (tmp / folder).mkdir(exist_ok=True)
        (tmp / folder / "edit.png").write_bytes((tmp / src).read_bytes())
    env = {**env, "image": tmp / "edit.png", "mask": tmp / "mask.png"}
    run_dir = tmp / "train_run"
    proc = run(["python", "train.py", "data=shards", f"data.train_shards='{env['train_pattern']}'",
                f"data.val_shards={env['val_shard']}", *TINY[:8], "device_simulation=null", "data.num_workers=0",
                "loss.lpips.allow_missing_weights=true", "+trainer.max_steps=1", "+trainer.limit_val_batches=1",
                "evaluate=false", "logger=csv", "callbacks.simulation_preview.n=0", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    env["ckpt"] = run_dir / "checkpoints" / "last.ckpt"
    return env


@pytest.fixture(scope="module")
def sd_env(full_env):
    from pixperfect.pilot import PilotPipeline
    from tiny_diffusers import tiny_sd_components

    folder = full_env["tmp"] / "sd"
    PilotPipeline(**tiny_sd_components(folder / "parts")).save_pretrained(folder / "model")
    return {**full_env, "sd": folder / "model"}


def hydra_jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists of the jobs a Hydra (multi)run launches: ``-m`` dropped, comma sweeps
    (``key=a,b``; not quoted values or lists) expanded to their cartesian product."""
    choices = []
    for arg in overrides:
        if arg in ("-m", "--multirun"):
            continue
        key, _, value = arg.partition("=")
        sweep = "," in value and not value.startswith(("[", "'", '"', "{")) and "(" not in value
        choices.append([f"{key}={v}" for v in value.split(",")] if sweep else [arg])
    return [list(job) for job in itertools.product(*choices)]


def compose_job(config_name: str, overrides: list[str]) -> str:
    """What ``--cfg job`` prints, in process (the same Hydra override grammar and config tree)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_yaml(compose(config_name=config_name, overrides=overrides))


def ensure_made(env: dict, rule: str, command: Command) -> None:
    """Run the README's first command of ``rule`` (e.g. the make_set or export an evaluate reads) unless its output exists."""
    source = next(c for c in COMMANDS if rule_for(c) == rule)
    argv = substitute(source.argv, env)
    if not Path(argv[4]).exists():
        check(run(argv), source)


def tiny_curve(argv: list[str], env: dict, command: Command) -> list[str]:
    """A README learnability command made small: steps 0 and 2 of a tiny model on the one tiny set."""
    ensure_made(env, "make_set", command)
    argv = list(argv)
    argv[argv.index("--at") + 1] = "0,2"
    while argv.count("--set") > 1:  # every eval_sets/… path maps to the one tiny set: keep one
        i = len(argv) - 1 - argv[::-1].index("--set")
        del argv[i:i + 2]
    return argv + ["model=cmgan_tiny", "data.resolution=32", "data.batch_size=2", "data.num_workers=0"]


def check(proc: subprocess.CompletedProcess, command: Command) -> None:
    assert proc.returncode == 0, f"README command failed: {command}\n{proc.stderr[-3000:]}"


def params():
    out = []
    for c in COMMANDS:
        rule = rule_for(c)
        marks = next((m for name, _, m in RULES if name == rule), ())
        out.append(pytest.param(c, rule, marks=marks, id=f"{c.block}:{c.text[:60]}"))
    return out


@pytest.mark.parametrize("command,rule", params())
def test_readme_command_runs(command, rule, request):
    if rule is None:
        pytest.fail(f"no rule for README command {command} (see test_every_readme_command_has_a_rule)")
    fixture = {"pilot_cli": "sd_env", "export": "full_env", "refine": "full_env", "preview": "full_env",
               "evaluate": "full_env", "make_set": "full_env",
               "learnability": "full_env", "amplification": "full_env", "prior_sweep": "full_env",
               "fit_probe": "full_env", "head_activity": "full_env",
               "colour_bound": "full_env"}.get(rule, "env")
    env = request.getfixturevalue(fixture)
    argv = substitute(command.argv, env)

    if rule == "make_dry_run":
        proc = run(["make", "-n", *argv[1:]], timeout=60)
        check(proc, command)
        assert proc.stdout.strip()
    elif rule == "make_shards":  # in process: same argv, no interpreter start-up
        from data.make_shards import main as make_shards_main

        if "--skip" in argv:  # the tiny photo folder has 4 photos: hold out 2 of them
            argv[argv.index("--skip") + 1] = "2"

        assert make_shards_main(argv[3:]) == 0, f"README command failed: {command}"
        out = Path(argv[4])
        assert sorted(out.glob("shard-*.tar")), f"{command} wrote no shards to {out}"
    elif rule == "demo_photos":  # in process: writes the scikit-image photos (no network)
        from data.demo import main as demo_main

        out = env["tmp"] / "demo_photos_written"  # not the tiny photo folder the path rules map it to
        assert demo_main([str(out), *argv[4:]]) == 0, f"README command failed: {command}"
        from data.demo import TRAIN_PHOTOS

        assert sorted(p.stem for p in out.glob("*.png")) == sorted(TRAIN_PHOTOS), command
    elif rule == "train_cfg_job":  # `python train.py ARGS --cfg job`, composed in process (per job of a sweep)
        for job in hydra_jobs(argv[2:]):
            printed = compose_job("train", job)
            if any(t.startswith("data.train_shards=") for t in job):  # the README's overrides arrived
                assert env["train_pattern"] in printed, command
    elif rule == "train_multirun":
        root = env["tmp"] / f"multirun_{command.block}"  # paths.root_dir: logs/ and outputs/ land here
        proc = run([*argv, *TINY_MULTIRUN, f"paths.root_dir={root}", f"paths.log_dir={root / 'logs'}"], timeout=600)
        check(proc, command)
        jobs_expected = len(hydra_jobs([t for t in argv[2:]]))
        (sweep,) = (root / "logs" / "train" / "multiruns").iterdir()
        jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
        assert len(jobs) == jobs_expected and (sweep / "multirun.yaml").is_file()
        exports = re.findall(r"exported EMA refiner to (\S+)", proc.stdout)
        assert len(set(exports)) == jobs_expected  # every job ran to its own export
        assert all((Path(e) / "model.safetensors").is_file() for e in exports)
    elif rule == "preview":
        if "--out" not in argv:
            argv += ["--out", str(env["tmp"] / "out" / f"preview_{command.block}.png")]
        check(run([*argv, "--resolution", "64"] if "--resolution" not in argv else argv), command)
        assert Path(argv[argv.index("--out") + 1]).stat().st_size > 0
    elif rule == "export":
        check(run(argv), command)
        assert (Path(argv[4]) / "model.safetensors").is_file()
    elif rule == "refine":
        if not (env["tmp"] / "my_refiner" / "model.safetensors").is_file():  # the export command before it
            check(run(["python", "-m", "pixperfect.export", str(env["ckpt"]), str(env["tmp"] / "my_refiner")]), command)
        check(run(argv), command)
        out = Path(argv[argv.index("--out") + 1])
        assert out.is_file() or sorted(out.glob("*.png")), command
    elif rule == "pilot_cli":
        text = re.sub(r"\[[^\]]*\]", " ", command.text)  # drop the [optional] synopsis groups
        argv = substitute(shlex.split(text, comments=True), env)
        argv += ["--steps", "4", "--op-interval", "2", "--gradient-steps", "2"]
        check(run(argv), command)
        assert Path(argv[argv.index("--out") + 1]).is_file()
    elif rule == "generate_cfg_job":  # `python -m evaluation.generate pilot ARGS --cfg job`, in process, per job
        assert argv[3] == "pilot", command
        for job in hydra_jobs(argv[4:]):
            printed = compose_job("generate", job)
            assert "input:" in printed
    elif rule == "calibrate":
        check(run(argv), command)
        if "--png" in argv:
            assert Path(argv[argv.index("--png") + 1]).stat().st_size > 0
    elif rule == "make_set":  # every README set maps to the one tiny set: start from a fresh folder
        shutil.rmtree(argv[4], ignore_errors=True)
        check(run(argv), command)
        assert sorted(Path(argv[4]).glob("*.tar")), command
    elif rule == "evaluate":  # the set from README's make_set command, the refiner from its export command
        ensure_made(env, "make_set", command)
        ensure_made(env, "export", command)
        check(run(argv, timeout=900), command)  # six refiners × pool 8 on 2 cores
        out_dir = Path(next(t for t in argv if t.startswith("out_dir=")).split("=", 1)[1])
        assert (out_dir / "results.json").is_file()
    elif rule == "bench":
        check(run(argv, timeout=600), command)
    elif rule == "amplification":
        ensure_made(env, "make_set", command)
        proc = run(argv)
        check(proc, command)
        assert "| all (" in proc.stdout and "| features | 7 | 10 | 19 | 84 | 31 | 286 |" in proc.stdout, proc.stdout
    elif rule == "prior_sweep":
        ensure_made(env, "make_set", command)
        proc = run(argv)
        check(proc, command)
        rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "ring=" in line]
        assert proc.stdout.startswith("| variant | overall |") and rows, proc.stdout
    elif rule == "head_activity":  # every --refiner NAME=outputs/… is the README's export of the tiny checkpoint
        ensure_made(env, "make_set", command)
        ensure_made(env, "export", command)
        names = [argv[i + 1].split("=", 1)[0] for i, t in enumerate(argv) if t == "--refiner"]
        argv = [f"{t.split('=', 1)[0]}={env['tmp'] / 'my_refiner'}" if i and argv[i - 1] == "--refiner" else t
                for i, t in enumerate(argv)]
        proc = run(argv)
        check(proc, command)
        assert names and all(f"| {n}: family |" in proc.stdout for n in names) and "| all |" in proc.stdout, proc.stdout
    elif rule == "learnability":  # a 2-step curve of a tiny model; --plot draws what the commands before wrote
        if "--plot" in argv:  # run alone (-k), the curves it plots are first made by the README commands that write them
            for curve in argv[argv.index("--plot") + 1:argv.index("--png")]:
                if not Path(curve).is_file():
                    source = next(c for c in COMMANDS if rule_for(c) == "learnability" and "--out" in c.argv
                                  and substitute(c.argv, env)[c.argv.index("--out") + 1] == curve)
                    check(run(tiny_curve(substitute(source.argv, env), env, source), timeout=600), source)
        else:
            argv = tiny_curve(argv, env, command)
        check(run(argv, timeout=600), command)
        written = argv[argv.index("--png") + 1] if "--plot" in argv else argv[argv.index("--out") + 1]
        assert Path(written).stat().st_size > 0, command
    elif rule == "fit_probe":  # 2 tiny steps; every line is a measurement, the first the untrained refiner
        if "--set" in argv:
            ensure_made(env, "make_set", command)
        argv[argv.index("--steps") + 1] = "2"
        argv += ["--every", "1", "model=cmgan_tiny", "data.resolution=32", "data.batch_size=2"]
        proc = run(argv, timeout=600)
        check(proc, command)
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert [r["step"] for r in rows] == [0, 1, 2] and all(r["masked_l1_ratio"] > 0 for r in rows), proc.stdout
        if "--set" in argv:  # per family too, each a positive ratio
            assert all(r["families"] and min(r["families"].values()) > 0 for r in rows), proc.stdout
    elif rule == "colour_bound":  # oracle rows leave alone what they would harm: no overall ratio above 1
        ensure_made(env, "make_set", command)
        proc = run(argv)
        check(proc, command)
        rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("| ") and "variant" not in line]
        assert {r[1].strip() for r in rows} >= {"offset, one per image", "affine, one per image"}, proc.stdout
        assert all(0 <= float(r[2]) <= 1.0 for r in rows), proc.stdout
        shares = proc.stdout.strip().splitlines()[-1]  # each family's share of the input's error, in %
        assert shares.startswith("share of the input's masked L1 per family:") and "%" in shares, proc.stdout
    elif rule == "presimulate":  # 4 samples at 32², no workers, into a fresh folder
        out = Path(argv[3])
        shutil.rmtree(out, ignore_errors=True)
        argv[argv.index("--n") + 1] = "4"
        argv += ["--workers", "0", "data.resolution=32", "data.batch_size=2", "data.val_images=1",
                 "data.val_per_image=1"]
        check(run(argv), command)
        import numpy as np

        meta = json.loads((out / "meta.json").read_text())
        x_gen, x_gt = np.load(out / "x_gen.npy"), np.load(out / "x_gt.npy")
        assert meta["n"] == 4 and x_gen.shape == (4, 3, 32, 32) and (x_gen != x_gt).any(), meta
    elif rule == "table4_one_gpu":  # the README's environment, then two rows made small and run on the CPU
        ensure_made(env, "make_set", command)
        tiny_set = env["tmp"] / "eval_sets" / "tiny"
        sim_set = env["tmp"] / "eval_sets" / "tiny_sim"  # the curve needs two folder names
        if not sim_set.exists():
            sim_set.symlink_to(tiny_set)
        out = env["tmp"] / "out" / "table4"
        shutil.rmtree(out, ignore_errors=True)
        given = dict(t.split("=", 1) for t in argv[:argv.index("bash")])
        assert Path(given["SHARDS"]).name == "cbsd68_skip20", given  # the folder README's make_shards writes
        variables = {**given, "SHARDS": str(Path(env["train_pattern"]).parent), "OUT": str(out), "N": "8",
                     "ROWS": "pixel d2x", "AT": "[0,1]", "MAX_TIME": "00:00:05:00", "BENCH": str(tiny_set),
                     "SIM": str(sim_set),
                     "EXTRA": "trainer.accelerator=cpu model=cmgan_tiny data.batch_size=2 data.pin_memory=false"}
        proc = subprocess.run(["bash", "slurm/table4_one_gpu.sh"], cwd=ROOT, capture_output=True, text=True,
                              timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
                                                "PYTHONPATH": str(ROOT), **variables,
                                                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
        check(proc, command)
        for name in ("pixel", "d2x"):
            rows = [json.loads(line) for line in (out / "curves" / f"{name}.jsonl").read_text().splitlines()]
            assert sorted({r["step"] for r in rows}) == [0, 1] and {r["set"] for r in rows} == {"tiny", "tiny_sim"}
        table = (out / "eval" / "results.md").read_text()
        assert "| d2x+pool8 |" in table and "| pixel |" in table, table
    else:  # pragma: no cover - a rule without a runner
        pytest.fail(f"rule {rule} has no runner")
