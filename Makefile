# The two commands of the README: `make run` (whole pipeline) and `make test`.
# Both create or refresh .venv first; that step is a no-op when pyproject.toml is unchanged.
# `make lint` (CI runs it first): ruff, then mypy on the folders pyproject.toml's [tool.mypy] lists.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns/mlflow.db

.PHONY: run test venv lint bench clean-venv

venv: $(STAMP)

# torch is installed by pip first: pip's configuration finds the CPU build of the exact pin,
# which uv would not (it picks the CUDA build). uv then installs the rest quickly and keeps it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-warn-script-location --upgrade "pip>=24" "uv==0.13.8" "torch==2.13.0"
	UV_COMPILE_BYTECODE=1 $(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

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
