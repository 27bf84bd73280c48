# After cloning, two commands do everything, each setting itself up on a fresh machine:
#   make study   the main job: installs what is missing, then runs `gradprobe study`
#   make test    lint + the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gradprobe-installed
STUDY_OUT ?= runs/study

.PHONY: install study scan test lint bench clean

# Install when the venv is missing, pyproject.toml changed, or the venv's editable gradprobe
# points at another checkout (a venv shared between clones, as CI's is).
install:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ $(STAMP) -nt pyproject.toml ] && $(BIN)/python -c "import sys, gradprobe; \
	    sys.exit(not gradprobe.__file__.startswith('$(CURDIR)/src/'))" 2>/dev/null; then :; \
	else $(BIN)/python -m pip install -q -e ".[dev,ray,tensorboard]" && touch $(STAMP); fi

study: install
	$(BIN)/gradprobe study --out $(STUDY_OUT)

scan: install
	$(BIN)/gradprobe scan --out runs/scan

lint: install
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
