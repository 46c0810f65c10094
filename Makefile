# Mission Control — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make run PORT=8010 HOST=0.0.0.0`; HOST only from the command line (some shells export
# HOST as the machine's name).
PORT ?= 8000
HOST := $(if $(filter command line,$(origin HOST)),$(HOST),127.0.0.1)
# The address the built-in worker and writer are registered at (loopback for 0.0.0.0).
LOCAL_URL := http://$(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST)):$(PORT)

.PHONY: help install run test lint format migrate demo-proxies chaos assets bench bench-quick clean

help:
	@echo "make run    - install, migrate and serve http://127.0.0.1:8000 (embedded SQLite; PORT=, HOST=)"
	@echo "make test   - run the whole test suite (DATABASE_URL picks the database)"
	@echo "make lint   - ruff, format check, mypy, makemigrations --check"

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

run: install
	@mkdir -p var
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py setup_schedules
	@DEBUG=$${DEBUG:-1} $(PY) manage.py bootstrap --base-url $(LOCAL_URL) --banner
	@DEBUG=$${DEBUG:-1} MC_HOST=$(HOST) MC_PORT=$(PORT) PATH="$(CURDIR)/$(BIN):$$PATH" \
		$(PY) -m mission_control.devrun Procfile.dev

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run
	DEBUG=1 $(BIN)/mypy .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo-proxies: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py demo_proxies --count $${COUNT:-3}

chaos: install
	CHAOS_MISSIONS=$${CHAOS_MISSIONS:-500} CHAOS_SECONDS=$${CHAOS_SECONDS:-600} MC_LONG_STORMS=1 $(BIN)/pytest -m chaos -n 0 -s tests/e2e/test_chaos.py tests/e2e/test_kill_storm_processes.py

assets:
	bash dashboard/build_assets.sh

bench: install
	$(PY) -m bench $${BENCH_ARGS:-}

bench-quick: install
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) var staticfiles .mypy_cache .ruff_cache
