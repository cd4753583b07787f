# StellarMap Serverless — the commands. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST := $(VENV)/bin/pytest
PYTEST_ARGS ?=
# pytest in two processes, a test file per process at a time (about 24 instead of 35 minutes on
# 2 cores); `make test TEST_WORKERS=0` runs it in one.
TEST_WORKERS ?= 2
# `make demo PORT=9080`: the site on PORT, search PORT+1, stats PORT+2, ... the simulator on PORT+20 (0: free ports).
PORT = 8080  # not ?=: a PORT already in the environment (set by other tools) does not move the demo

.PHONY: install layering test test-unit test-integration test-e2e test-browser test-site bench bench-short chaos chaos-short \
        demo dev package terraform-check cassandra-start cassandra-stop emulators migrate clean

$(PY):
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q -e '.[test]'

# Everything CI checks: the layering of the imports, every test level (the offline Terraform checks
# included: tests/unit/test_terraform_checkov.py runs terraform/check.sh), the site's layout tests,
# and the short benchmark and chaos runs (figures only; nothing timed is asserted).
test: install
	$(MAKE) layering
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(PYTEST) -m serial $(PYTEST_ARGS)
	$(MAKE) test-site
	$(MAKE) bench-short
	$(MAKE) chaos-short

test-unit: install
	$(PYTEST) -m unit $(PYTEST_ARGS)

test-integration: install
	$(PYTEST) -m "integration or cassandra or emulator" $(PYTEST_ARGS)

test-e2e: install
	$(PYTEST) -m e2e $(PYTEST_ARGS)

test-browser: install
	$(PYTEST) -m browser $(PYTEST_ARGS)

test-site:
	node --test static_site/tests/

# The import graph's rules (local/layering.py): adapters never import handlers, common/ never
# imports local/, bench/, tests/ or the CLI, bench and tests never import each other, no new cycle.
layering: install
	$(PY) -m local.layering

bench: install
	$(PY) -m bench.run --full

bench-short: install
	$(PY) -m bench.run --short

chaos: install
	$(PY) -m bench.chaos --full

chaos-short: install
	$(PY) -m bench.chaos --short

# The embedded Hubble by default (the simulator's tables, loaded once per network); HUBBLE=none: the API path only.
HUBBLE = duckdb
demo: install
	$(PY) -m local.stack --hubble $(HUBBLE) --base-port $(PORT) --urls-file .local-data/stack-urls.json

dev: install
	$(PY) -m local.stack --dev --base-port $(PORT) --urls-file .local-data/stack-urls.json

package: install
	$(PY) -m local.package

terraform-check: install
	bash terraform/check.sh

migrate: install
	$(VENV)/bin/stellarmap migrate --verify

cassandra-start:
	bash local/cassandra.sh start

cassandra-stop:
	bash local/cassandra.sh stop

emulators:
	bash local/emulators.sh build

clean:
	rm -rf .local-data test-artifacts terraform/build
