# After cloning, two commands do everything, each setting itself up on a fresh machine:
#   make study   the main job: installs what is missing, then runs `gradprobe study`
#   make test    lint + the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stamp per checkout, so a venv shared between clones (CI) still installs each checkout.
STAMP := $(VENV)/.installed-$(shell printf '%s' "$(CURDIR)" | cksum | cut -d' ' -f1)
STUDY_OUT ?= runs/study

.PHONY: install study scan test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev,ray,tensorboard]"
	@touch $@

install: $(STAMP)

study: $(STAMP)
	$(BIN)/gradprobe study --out $(STUDY_OUT)

scan: $(STAMP)
	$(BIN)/gradprobe scan --out runs/scan

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
