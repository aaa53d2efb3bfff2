# The two commands of the README: `make run` (whole pipeline) and `make test`.
# Both create or refresh .venv first; that step is a no-op when pyproject.toml and
# requirements.lock are unchanged.
# `make lint` (CI runs it first): ruff, then mypy on the folders pyproject.toml's [tool.mypy] lists.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
TORCH := torch==2.13.0
export DVC_NO_ANALYTICS := 1
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db

.PHONY: run test venv lint lock bench clean-venv

venv: $(STAMP)

# torch is installed by pip first: pip's configuration finds the CPU build of the exact pin,
# which uv would not (it picks the CUDA build). uv then installs the locked set (every other
# package at the version tested), mmx itself without resolving again, and checks the result.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-warn-script-location --upgrade "pip>=24" "uv==0.13.8" "$(TORCH)"
	UV_COMPILE_BYTECODE=1 $(BIN)/uv pip install -q --python $(BIN)/python -r $(LOCK)
	UV_COMPILE_BYTECODE=1 $(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/uv pip check -q --python $(BIN)/python
	touch $(STAMP)

# Rewrite the lock from the venv as it is (after upgrading and testing a package in it).
lock:
	{ echo "# The tested set, every package pinned (torch: the Makefile's TORCH). Written by make lock."; \
	  $(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable \
	  | grep -v -E '^(torch|pip|uv|setuptools)=='; } > $(LOCK)

run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pipelines.run_all

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mmx pipelines tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/predict_speed.py

clean-venv:
	rm -rf $(VENV)
