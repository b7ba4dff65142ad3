# Two commands for a newcomer: `make demo` and `make test`.
# Each creates the virtualenv in .venv when missing (torch 2.14.1 + torchvision 0.29.1).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_OUT ?= demo_out
DEVICE ?= auto

.PHONY: demo test venv clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch-installed: | $(BIN)/python
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	touch $@

$(VENV)/.base-installed: pyproject.toml $(VENV)/.torch-installed
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.torch-installed
	$(PIP) install -q -e '.[test,peer]'
	touch $@

venv: $(VENV)/.base-installed

demo: $(VENV)/.base-installed
	$(BIN)/umed-demo --out $(DEMO_OUT) --device $(DEVICE)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
