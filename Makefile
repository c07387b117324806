# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slurm venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) train.py experiment=demo

# the browser test of the Gradio page also needs Debian's Chromium: apt-get install chromium (else it skips)
test: $(STAMP)
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -q

# slurm/train.sbatch on a real single-node Slurm cluster on this machine (root: installs Debian's
# slurm-wlm + munge, starts and stops the daemons): a debug run, then a run pre-empted by USR1 and by
# `scontrol requeue` must end like an uninterrupted one. Several minutes on 2 cores.
test-slurm: $(STAMP)
	slurm/test_slurm.sh

clean:
	rm -rf $(VENV) logs outputs
