# StreamForge: the two commands of the quick start, and a few more for developers.
# Each target creates .venv and installs what it needs the first time (and when
# pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: help demo test bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

demo: $(VENV)/.core  ## simulate two hours of shop traffic into out/demo and print the summary
	$(BIN)/streamforge simulate --output file://out/demo

test: $(VENV)/.dev  ## run the whole test suite
	$(BIN)/pytest

bench: $(VENV)/.dev  ## run the benchmarks (tables on stdout)
	$(BIN)/python benchmarks/simulator_throughput.py

clean:  ## remove the virtual environment and generated data
	rm -rf $(VENV) out .pytest_cache .hypothesis

$(VENV)/.python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "StreamForge needs Python 3.11 or newer, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.core: pyproject.toml $(VENV)/.python  # the core package: simulator, schemas, CLI
	$(BIN)/pip install --quiet --editable .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.python  # everything, plus the test tools
	$(BIN)/pip install --quiet --editable '.[dev]'
	touch $@ $(VENV)/.core
