# The two set-up commands of the README:
#   make serve   -> venv + install + serve the bundled demo models on http://127.0.0.1:8080
#   make test    -> venv + install + ruff + mypy + the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (an unpinned torch pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install serve test lint typecheck pytest train-demo ood-example bench clean train-text-demo

# batchbald-redux is the reference of tests/engine/test_batchbald.py: its declared
# torch/torchvision requirements would replace the CPU torch, so it is installed without them
# (it imports toma and psutil; psutil comes with the dev extra).
$(BIN)/mcdrop: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "batchbald-redux==2.0.5" "toma==1.1.0"
	touch $(BIN)/mcdrop

install: $(BIN)/mcdrop

serve: install
	$(BIN)/mcdrop serve --models-dir models

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy app tests scripts bench

pytest: install
	$(BIN)/python -m pytest

test: lint typecheck pytest

train-demo: install
	$(BIN)/python scripts/train_demo_models.py --out models
	$(BIN)/python scripts/train_image_demo.py --out models --pictures docs/images

train-text-demo: install
	$(BIN)/python scripts/train_text_demo.py --out models/ticket-triage

ood-example: install
	$(BIN)/python scripts/ood_example.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
