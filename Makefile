# After cloning, two commands do everything, each setting itself up on a fresh machine:
#   make study   the main job: installs what is missing, then runs `gradprobe study`
#   make test    lint + the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STUDY_OUT ?= runs/study

# What each goal installs: the study needs gradprobe alone; the tests need every optional extra,
# because the suite runs the integrations (Ray, TensorBoard, Lightning, Hugging Face, notebook).
STUDY_EXTRAS :=
TEST_EXTRAS := [dev,ray,tensorboard,lightning,hf,notebook]

.PHONY: install install-study install-test study scan test lint bench clean

# Install when the venv is missing, pyproject.toml changed since the goal's stamp, or the venv's
# editable gradprobe points at another checkout (a venv shared between clones, as CI's is).
# $(1): the stamp file, $(2): the extras.
define install_once
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ $(1) -nt pyproject.toml ] && $(BIN)/python -c "import sys, gradprobe; \
	    sys.exit(not gradprobe.__file__.startswith('$(CURDIR)/src/'))" 2>/dev/null; then :; \
	else $(BIN)/python -m pip install -q -e ".$(2)" && touch $(1); fi
endef

install-study:
	$(call install_once,$(VENV)/.gradprobe-study,$(STUDY_EXTRAS))

install-test:
	$(call install_once,$(VENV)/.gradprobe-test,$(TEST_EXTRAS))

install: install-test

study: install-study
	$(BIN)/gradprobe study --out $(STUDY_OUT)

scan: install-study
	$(BIN)/gradprobe scan --out runs/scan

lint: install-test
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

bench: install-study
	$(BIN)/python -m benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
