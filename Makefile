# flowguard: the commands a developer and CI run. `make demo` and `make test` are the README's two.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/ci.lock
# Touched after a complete install: a half-finished one is redone, an unchanged one is skipped.
STAMP := $(VENV)/.installed

.PHONY: setup install system-demo system-test demo test lint stop ci lock schema bench

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

# The venv with the locked dependencies (created when missing, refreshed when they change).
setup: $(STAMP)
install: setup

# System packages (Redis, python3-venv; Chromium and jq for the tests), by the script CI runs:
# apt-get as root, else one line naming what to install. Quick when all is there.
system-demo:
	@deploy/setup-system demo
system-test:
	@deploy/setup-system test

# Redis and Kafka from deploy/, flowguard's topics, doctor, then the whole flow: a Celery app
# with failing tasks, its bridge, a flowguard worker with the page's templates, the API/UI.
demo: system-demo setup
	deploy/redis/start
	@bootstrap=$$(deploy/kafka/start | tail -n 1) && \
	export FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS=$$bootstrap && \
	$(VENV)/bin/flowguard topics create && \
	$(VENV)/bin/flowguard doctor && \
	$(PY) -m flowguard.demo.run start
	@echo "--- the product page's templates replayed over real recorded Celery failures:"
	$(VENV)/bin/flowguard replay --workflows flowguard/control/workflow_templates --events tests/data/streams/basic.jsonl --format table
	$(VENV)/bin/flowguard replay --workflows flowguard/control/workflow_templates --events tests/data/streams/worker_sigkill.jsonl --format table
	$(VENV)/bin/flowguard replay --workflows flowguard/control/workflow_templates --events tests/data/streams/celery_retry.jsonl --format table

# Kafka and Redis: FLOWGUARD_TEST_KAFKA / FLOWGUARD_TEST_REDIS when set, else tests/conftest.py
# starts them from deploy/ (and stops what it started). pytest exits 5 when it collected nothing:
# that fails here too, with a line saying why.
test: system-test setup
	@$(VENV)/bin/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; fi; \
	exit $$status

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Returns once every process it stopped has exited (the demo's worker takes ~10 s).
stop:
	-$(PY) -m flowguard.demo.run stop
	deploy/kafka/stop
	deploy/redis/stop

ci:
	bash .ci/run

# Exact versions of everything in the venv but flowguard itself; pip pinned too.
lock: setup
	(echo "# Exact versions CI installs (pip install -c requirements/ci.lock -e '.[dev]')."; \
	 echo "# Regenerate: make lock"; \
	 { $(VENV)/bin/pip freeze --exclude-editable; $(VENV)/bin/pip freeze --all | grep '^pip=='; } \
	   | grep -v -i '^flowguard' | sort -f) > $(LOCK)

schema: setup
	$(VENV)/bin/flowguard schema

bench: setup
	$(PY) bench/replay.py
