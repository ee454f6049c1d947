# Two commands for a new machine: `make serve` and `make test`. Both create .venv on first use.
# `make` alone lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: help serve test unit train models clean

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files re-run the install whenever pyproject.toml changes.
$(VENV)/.runtime-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.train-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train]"
	touch $@ $(VENV)/.runtime-installed

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.runtime-installed $(VENV)/.train-installed

## serve: install the service and serve the bundled models on http://HOST:PORT (0.0.0.0:8000)
serve: $(VENV)/.runtime-installed
	$(BIN)/python -m app --host $(HOST) --port $(PORT)

## test: install the development dependencies, lint and type-check, and run every test (unit, integration, e2e)
test: $(VENV)/.dev-installed
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/python -m pytest

## unit: the unit tests alone (in-process, a fake backend: seconds)
unit: $(VENV)/.dev-installed
	$(BIN)/python -m pytest tests/unit

## train: install the training extras and train; CONFIG=training/configs/mnist_lenet.yaml ARGS="--set epochs=5"
CONFIG ?= training/configs/mnist_lenet.yaml
ARGS ?=
train: $(VENV)/.train-installed
	$(BIN)/python -m training train --config $(CONFIG) $(ARGS)

## models: retrain the bundled models and replace them in models/ (about an hour on 2 cores)
models: $(VENV)/.train-installed
	$(BIN)/python -m training bundle

## clean: remove the virtual environment and training runs
clean:
	rm -rf $(VENV) runs .pytest_cache
