# Two commands for a new machine: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8000

.PHONY: serve test models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files re-run the install whenever pyproject.toml changes.
$(VENV)/.runtime-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.runtime-installed

## serve: install the service and serve the bundled models on http://$(HOST):$(PORT)
serve: $(VENV)/.runtime-installed
	$(BIN)/python -m app --host $(HOST) --port $(PORT)

## test: install the development dependencies and run the whole test suite
test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

## models: retrain and re-export the bundled models (softmax, mlp, lenet) on MNIST
models: $(VENV)/.dev-installed
	$(BIN)/python -m training bundle

clean:
	rm -rf $(VENV) runs .pytest_cache
