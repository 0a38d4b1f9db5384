# Two commands on a fresh machine:
#   make demo   run the main job (provisions the venv and the Kafka broker, runs the pipeline)
#   make test   run the whole test suite (provisions the venv; the tests provision the broker)
# The virtual environment is cached outside the repository (torch alone is ~5 GB) and
# reinstalled only when requirements.lock changes.

PYTHON ?= python3.11
CACHE ?= $(HOME)/.cache/banditlp
VENV ?= $(CACHE)/venv
LOCK_SHA := $(shell sha256sum requirements.lock | cut -c1-16)
STAMP := $(VENV)/.installed-$(LOCK_SHA)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv lint format test test-unit test-integration demo kafka-up kafka-down bench clean-venv browser

$(STAMP): requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)
	@$(PY) -m pip install -q --no-deps --no-build-isolation -e .

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: venv browser obd
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv obd
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv browser
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# The Open Bandit Dataset sample (from PyPI's obp 0.5.7 sdist) for evaluation/datasets; fetched once.
obd: venv
	$(PY) -m evaluation.datasets.obd fetch $(CACHE)/obd

# Headless Chromium (Debian's package) for the report's page test; installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

demo: venv
	$(VENV)/bin/banditlp demo

kafka-up: venv
	$(VENV)/bin/banditlp kafka up

kafka-down: venv
	$(VENV)/bin/banditlp kafka down

bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
