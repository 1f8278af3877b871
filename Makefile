# NeonPro Records — the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
# sslyze needs cryptography<47 and the project pins 50: it gets a virtualenv of its own.
SSLYZE_VENV := .venv-sslyze
SSLYZE_STAMP := $(SSLYZE_VENV)/.installed-$(shell sha256sum requirements-sslyze.txt | cut -c1-12)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/neonpro
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

# Debian packages the test suite drives for real (installed when missing): a connection pooler,
# an HSM, and a real browser with its WebDriver (tests/browser).
SYSTEM_PACKAGES := pgbouncer softhsm2 chromium chromium-driver

.PHONY: run test mutation qa lint format mypy services tools sslyze bench bench-smoke screenshots clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

$(SSLYZE_STAMP): requirements-sslyze.txt
	@test -x $(SSLYZE_VENV)/bin/python || $(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/python -m pip install -q -r requirements-sslyze.txt
	@rm -f $(SSLYZE_VENV)/.installed-* && touch $@

# The embedded default: SQLite, local master key file, eager tasks, in-memory channels.
# `make run PORT=8444` when 8443 is taken.
PORT ?= 8443
run: $(STAMP)
	@$(BIN)/python manage.py keys create-master --if-missing
	@$(BIN)/python manage.py migrate --noinput -v 0
	@$(BIN)/python manage.py keys init
	@$(BIN)/python manage.py collectstatic --noinput -v 0
	@$(BIN)/python manage.py demo run --host 127.0.0.1 --port $(PORT)

# Start PostgreSQL and Redis when they are not already running (CI machines start them).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done

tools:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The TLS scanner the test suite runs against `manage.py serve`.
sslyze: $(SSLYZE_STAMP)

# Line and branch coverage of every run, subprocesses included ([tool.coverage.run] in
# pyproject.toml). A full run enforces tests/coverage_policy.py; a run narrowed with
# PYTEST_ARGS only reports (COVERAGE_CHECK=enforce enforces anyway).
COVERAGE_DIR := $(CURDIR)/var/coverage
COVERAGE_CHECK ?= $(if $(strip $(PYTEST_ARGS)),report,enforce)

test: $(STAMP) $(SSLYZE_STAMP) services tools
	@rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	@export COVERAGE_FILE=$(COVERAGE_DIR)/.coverage; \
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/coverage run -m pytest $(PYTEST_ARGS); \
	status=$$?; \
	$(BIN)/coverage combine --quiet --data-file=$$COVERAGE_FILE $(COVERAGE_DIR) || status=1; \
	$(BIN)/python -m tests.coverage_policy $(COVERAGE_CHECK) || { [ $$status -ne 0 ] || status=1; }; \
	exit $$status

# The README's pictures: the browser tests, saving their screenshots (demo data only) to
# docs/screenshots/ instead of only taking them.
screenshots: $(STAMP) services tools
	NEONPRO_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -m pytest tests/browser -q -p no:randomly

# Mutation testing of the crypto and audit core (not in CI: it takes minutes per module).
# Each module runs against its own tests on a database of its own (tests/mutation.py);
# MODULES="keys/crypto.py" narrows it.
MUTATION_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/neonpro_mut
MUTATION_REDIS_URL ?= redis://127.0.0.1:6379/4

mutation: $(STAMP) services tools
	MUTATION_DATABASE_URL=$(MUTATION_DATABASE_URL) MUTATION_REDIS_URL=$(MUTATION_REDIS_URL) \
		$(BIN)/python -m tests.mutation $(MODULES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

mypy: $(STAMP)
	$(BIN)/mypy keys certificates

qa: lint mypy test

bench: $(STAMP) services
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python bench/fields.py

# Every benchmark at a tiny size: they run and print their JSON line (CI; figures not checked).
bench-smoke: $(STAMP) services
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python bench/smoke.py

clean:
	rm -rf $(VENV) $(SSLYZE_VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
