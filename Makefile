# The two set-up commands of the README:
#   make serve   -> venv + the runtime install (`.[serve]`) + serve the bundled demo models on
#                   http://127.0.0.1:8080
#   make test    -> venv + the dev install (`.[dev]`) + ruff + mypy + the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (an unpinned torch pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# What each install has done, so that a second `make` installs nothing (pyproject.toml or
# this file changing redoes it). The dev install includes the runtime one.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install install-dev install-bench serve test lint typecheck pytest train-demo \
	ood-example clean train-text-demo train-audio-demo train-lesion-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, from TORCH_INDEX when set, so that the extras' requirements keep this build.
$(SERVE_STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" -e ".[serve]"
	touch $@

# batchbald-redux is the reference of tests/engine/test_batchbald.py: its declared
# torch/torchvision requirements would replace the CPU torch, so it is installed without them
# (it imports toma and psutil; psutil comes with the dev extra).
$(DEV_STAMP): $(SERVE_STAMP)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "batchbald-redux==2.0.5" "toma==1.1.0"
	touch $@

$(BENCH_STAMP): $(SERVE_STAMP)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" -e ".[bench]"
	touch $@

install: $(SERVE_STAMP)

install-dev: $(DEV_STAMP)

install-bench: $(BENCH_STAMP)

serve: install
	$(BIN)/mcdrop serve --models-dir models

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy app tests scripts bench

pytest: install-dev
	$(BIN)/python -m pytest

test: lint typecheck pytest

train-demo: install-dev
	$(BIN)/python scripts/train_demo_models.py --out models
	$(BIN)/python scripts/train_image_demo.py --out models --pictures docs/images

train-text-demo: install-dev
	$(BIN)/python scripts/train_text_demo.py --out models/ticket-triage

# Needs Debian's espeak-ng (apt-get install espeak-ng): the corpus is synthetic speech.
train-audio-demo: install-dev
	$(BIN)/python scripts/train_audio_demo.py --out models --samples docs/audio

train-lesion-demo: install-dev
	$(BIN)/python scripts/train_lesion_seg.py --out models

ood-example: install-dev
	$(BIN)/python scripts/ood_example.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
