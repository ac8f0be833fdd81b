# mailroom: every target does its own set-up, idempotently, on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMPS := .stamps

.PHONY: help setup demo test lint bench bench-quick clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(STAMPS)/python: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(STAMPS)/system:
	@mkdir -p $(STAMPS)
	@command -v java >/dev/null || { echo "java (17+) is required"; exit 1; }
	@command -v mvn >/dev/null || { echo "maven is required to fetch the Kafka jars"; exit 1; }
	@command -v kcat >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq kcat >/dev/null; \
	  else echo "kcat missing: sudo apt-get install kcat"; exit 1; fi; }
	@touch $@

$(STAMPS)/jars: ops/kafka/pom.xml $(STAMPS)/python
	$(BIN)/mailroom broker fetch
	@touch $@

# Jaeger v2 from the Go module proxy (several minutes the first time); optional: its test
# skips without it.
$(STAMPS)/jaeger: ops/jaeger/build.sh
	@mkdir -p $(STAMPS)
	timeout 900 bash ops/jaeger/build.sh || echo "Jaeger was not built; tests/e2e/test_jaeger.py will skip"
	@touch $@

setup: $(STAMPS)/python $(STAMPS)/system $(STAMPS)/jars $(STAMPS)/jaeger ## venv, deps, kcat, Kafka jars, Jaeger

demo: setup ## run the pipeline on the embedded broker with bundled sample emails
	$(BIN)/mailroom demo

test: setup ## unit, integration and end-to-end tests (starts its own broker)
	$(BIN)/pytest -q

lint: setup ## ruff, formatting and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# redis-server: the broker of the Celery peer in the benchmarks.
$(STAMPS)/redis:
	@mkdir -p $(STAMPS)
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server missing: sudo apt-get install redis-server"; exit 1; fi; }
	@touch $@

bench: setup $(STAMPS)/redis ## every benchmark side by side: one table, .bench/results.json (~25 min)
	$(BIN)/python -m ops.bench $(ARGS)

bench-quick: setup $(STAMPS)/redis ## the same harness at small sizes (CI; under 2 min)
	$(BIN)/python -m ops.bench --quick --json .bench/quick.json

clean: ## remove the venv, caches and the demo data dir
	rm -rf $(VENV) $(STAMPS) .mailroom ops/kafka/target .pytest_cache .mypy_cache .ruff_cache
