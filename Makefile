# flowguard: the commands a developer and CI run. `make demo` and `make test` are the README's two.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint stop ci lock schema bench

$(STAMP): pyproject.toml requirements/ci.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/ci.lock -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	deploy/redis/start
	deploy/kafka/start
	$(VENV)/bin/flowguard topics create
	$(VENV)/bin/flowguard doctor
	@echo "--- the product page's templates replayed over real recorded Celery failures:"
	$(VENV)/bin/flowguard replay --workflows flowguard/templates --events tests/data/streams/basic.jsonl --format table
	$(VENV)/bin/flowguard replay --workflows flowguard/templates --events tests/data/streams/worker_sigkill.jsonl --format table
	$(VENV)/bin/flowguard replay --workflows flowguard/templates --events tests/data/streams/celery_retry.jsonl --format table

test: setup
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

stop:
	deploy/kafka/stop
	deploy/redis/stop

ci:
	bash .ci/run

lock: setup
	(echo "# Exact versions CI installs (pip install -c requirements/ci.lock -e '.[dev]')."; \
	 echo "# Regenerate: make lock"; \
	 $(VENV)/bin/pip freeze --exclude-editable | grep -v -i '^flowguard' | sort -f) > requirements/ci.lock

schema: setup
	$(VENV)/bin/flowguard schema

bench: setup
	$(PY) bench/replay.py
