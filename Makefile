# Two commands set a fresh clone up: `make run` (the main job) and `make test` (the test suite).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup browser run train test lint bench

setup: $(VENV)/.installed browser

# tests/test_report_browser.py opens the HTML reports in Debian's chromium and chromedriver (Selenium is told where
# they are and downloads nothing); installed once here, with sudo only when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# torch is pinned by constraints.txt to the local CPU wheel (2.13.0); nothing may pull another torch.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

run: setup
	$(BIN)/tdlab reproduce --quick

train: setup
	$(BIN)/tdlab train examples/mnist1d-mlp.yaml

test: setup
	$(BIN)/python -m pytest -n 2

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python -m pip uninstall -y -q torchvision
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done
