# StreamForge: the two commands of the quick start, and a few more for developers.
# Each target creates .venv and installs what it needs the first time (and when
# pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The emulators that come from PyPI, each in an environment of its own (emulators/NAME.txt)
EMULATORS := $(VENV)/emulators

.PHONY: help demo live test test-bigquery format bench functions dataflow infra-plan clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: $(VENV)/.pipelines  ## simulate 2 h of traffic, run the three Beam jobs into DuckDB, print the summary
	@echo "== 1/3 simulate two hours of shop traffic (fraud cases, 0.5% malformed, 0.5% duplicates) -> out/demo"
	$(BIN)/streamforge simulate --output file://out/demo --malformed 0.005 --duplicates 0.005
	@echo "== 2/3 run sessions, revenue and fraud in one Beam pipeline (DirectRunner, batch) -> out/demo/warehouse.duckdb"
	rm -f out/demo/warehouse.duckdb
	$(BIN)/streamforge run all --input file://out/demo --warehouse duckdb://out/demo/warehouse.duckdb
	@echo "== 3/3 what the warehouse holds, and the alerts against the injected ground truth"
	$(BIN)/streamforge report --warehouse out/demo/warehouse.duckdb --labels out/demo/fraud_labels.jsonl

live: $(VENV)/.live  ## the whole system live on 127.0.0.1 (streamforge up: dashboard on http://127.0.0.1:8050/); Ctrl-C stops it
	$(BIN)/streamforge up

test: $(VENV)/.dev $(VENV)/.spark-classes $(EMULATORS)/storage/.installed $(EMULATORS)/bigquery/.installed  ## lint, check the format (ruff) and the declared dependencies (deptry), then run the test suite (all but the BigQuery set)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/deptry .
	$(BIN)/deptry tests benchmarks --exclude '(\.venv|out|dist)/' --ignore DEP002,DEP004
	$(BIN)/pytest -m "not bigquery"

test-bigquery: $(VENV)/.dev $(EMULATORS)/storage/.installed $(EMULATORS)/bigquery/.installed  ## the production BigQuery sinks against the local BigQuery and Cloud Storage emulators (about 5 minutes; .ci/run runs it after `make test`)
	$(BIN)/pytest -m bigquery

format: $(VENV)/.dev  ## format the code and sort its imports (ruff), as `make test` checks
	$(BIN)/ruff format .
	$(BIN)/ruff check --select I --fix .

bench: $(VENV)/.dev $(VENV)/.spark-classes  ## run the benchmarks (tables on stdout; about 40 minutes)
	$(BIN)/python benchmarks/simulator_throughput.py
	$(BIN)/python benchmarks/pipeline_throughput.py
	$(BIN)/python benchmarks/live_streaming.py
	$(BIN)/python benchmarks/kafka_input.py
	$(BIN)/python benchmarks/cdc_latency.py
	$(BIN)/python benchmarks/functions_latency.py
	$(BIN)/python benchmarks/batch_daily.py

functions: $(VENV)/.core  ## package the Cloud Functions for deployment into dist/functions/
	$(BIN)/streamforge functions package --output dist/functions

dataflow: $(VENV)/.pipelines  ## write the Dataflow image's build context (wheelhouse, Dockerfile) into dist/dataflow/
	$(BIN)/streamforge dataflow build --output dist/dataflow

# An image digest for the offline plan only: `pulumi up` takes the digest Cloud Build printed (docs/infra.md).
PLAN_IMAGE := europe-west1-docker.pkg.dev/my-shop-analytics/streamforge/streamforge@sha256:0000000000000000000000000000000000000000000000000000000000000000

infra-plan: $(VENV)/.dev  ## render what `pulumi up` would create from Pulumi.example.yaml, offline (Pulumi's mocks)
	$(BIN)/streamforge dataflow template --image $(PLAN_IMAGE) --output dist/dataflow/templates > /dev/null
	$(BIN)/streamforge functions package --output dist/functions > /dev/null
	$(BIN)/streamforge batch package --output dist/batch > /dev/null
	$(BIN)/streamforge infra plan --stack Pulumi.example.yaml

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

$(VENV)/.pipelines: pyproject.toml $(VENV)/.python  # the core plus the Beam pipelines and their sinks
	$(BIN)/pip install --quiet --editable '.[pipelines]'
	touch $@ $(VENV)/.core

$(VENV)/.live: pyproject.toml $(VENV)/.python  # the pipelines, CDC, functions and the dashboard
	$(BIN)/pip install --quiet --editable '.[live]'
	touch $@ $(VENV)/.core $(VENV)/.pipelines

$(VENV)/.dev: pyproject.toml $(VENV)/.python  # everything, plus the test tools
	$(BIN)/pip install --quiet --editable '.[dev]'
	touch $@ $(VENV)/.core $(VENV)/.pipelines $(VENV)/.live

$(EMULATORS)/%/.installed: emulators/%.txt $(VENV)/.python  # an emulator's own environment (streamforge/services.py starts it)
	$(PYTHON) -m venv $(EMULATORS)/$*
	$(EMULATORS)/$*/bin/pip install --quiet --requirement emulators/$*.txt
	touch $@

$(VENV)/.spark-classes: $(VENV)/.dev  # the JVM class-data archive local Spark starts from (batch/local_jvm.py)
	$(BIN)/streamforge batch class-archive
	touch $@
