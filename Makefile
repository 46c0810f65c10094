# Mission Control — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install run test lint format migrate demo-proxies chaos assets bench bench-quick clean

help:
	@echo "make run    - install, migrate and serve http://127.0.0.1:8000 (embedded SQLite)"
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
	DEBUG=$${DEBUG:-1} $(PY) manage.py bootstrap
	DEBUG=$${DEBUG:-1} $(PY) manage.py setup_schedules
	@echo "Mission Control: http://127.0.0.1:8000/  (admin: /admin/, API docs: /api/docs/)"
	DEBUG=$${DEBUG:-1} PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile.dev

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
	CHAOS_MISSIONS=$${CHAOS_MISSIONS:-500} CHAOS_SECONDS=$${CHAOS_SECONDS:-600} $(BIN)/pytest -m chaos -n 0 -s tests/e2e/test_chaos.py

assets:
	bash dashboard/build_assets.sh

bench: install
	$(PY) -m bench $${BENCH_ARGS:-}

bench-quick: install
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) var staticfiles .mypy_cache .ruff_cache
