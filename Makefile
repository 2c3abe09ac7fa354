# Perfpilot: `make run` starts the control plane, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test lint format install install-dev browser hypopg prometheus clean-data help bench bench-tools bench-lighthouse fuzz chaos

help:
	@echo "make run    - install and start Perfpilot (web, worker, beat, embedded PostgreSQL and Redis)"
	@echo "make test   - install what the tests need, lint, and run the whole suite"
	@echo "make lint   - ruff lint and format check"
	@echo "make format - apply ruff formatting and fixes"
	@echo "make fuzz   - a long API fuzzing pass (schemathesis, stateful, against a running server)"
	@echo "make chaos  - the chaos tests, repeated and with longer outages"
	@echo "make bench  - run the benchmarks (BENCH_ARGS=query for one) and update docs/benchmarks.md"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit("Perfpilot needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

# Installs the pinned dependencies from pyproject.toml; re-runs only when it changes.
$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) scripts/requirements.py > $(VENV)/requirements-run.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements-run.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run
	$(PY) scripts/requirements.py dev > $(VENV)/requirements-dev.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements-dev.txt
	@touch $@

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing Debian's chromium for the browser tests…"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "The browser tests need Debian's chromium at $(CHROMIUM): run 'sudo apt-get install chromium'." >&2; exit 1; \
		fi; \
	fi

# HypoPG for the machine's PostgreSQL 15: the index advisor's verified path is tested against it.
hypopg:
	@if [ ! -f /usr/share/postgresql/15/extension/hypopg.control ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing Debian's postgresql-15-hypopg for the index advisor tests…"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-hypopg >/dev/null; \
		else \
			echo "The index advisor tests need HypoPG: run 'sudo apt-get install postgresql-15-hypopg'." >&2; exit 1; \
		fi; \
	fi

# Debian's Prometheus (2.42) for the remote-write tests: the real client, started by the tests themselves.
prometheus:
	@if ! command -v prometheus >/dev/null; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing Debian's prometheus for the remote-write tests…"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
			systemctl disable --now prometheus >/dev/null 2>&1 || true; \
		else \
			echo "The remote-write tests need Debian's prometheus: run 'sudo apt-get install prometheus'." >&2; exit 1; \
		fi; \
	fi

run: install
	@mkdir -p var
	exec $(PY) manage.py run_control_plane

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install-dev browser hypopg prometheus lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The long API fuzzing pass (bench/fuzz.py): schemathesis with every check and phase, stateful
# included, 100 examples per operation, against gunicorn on the bench's own embedded servers;
# records its figures in docs/benchmarks.md. `make test` runs a bounded pass (tests/api/test_fuzz.py).
fuzz: install-dev
	DJANGO_SETTINGS_MODULE=config.settings_test PERFPILOT_VAR_DIR=var/bench \
		PERFPILOT_EMBEDDED_PG_PORT=54379 PERFPILOT_EMBEDDED_REDIS_PORT=63799 \
		PERFPILOT_FUZZ_EXAMPLES=$${PERFPILOT_FUZZ_EXAMPLES:-100} $(PY) -m bench fuzz

# The chaos tests (pytest -m chaos: workers SIGKILLed mid-run, the broker stopped, racing applies,
# the control plane's PostgreSQL and Redis stopped under load) repeated PERFPILOT_CHAOS_REPEAT times
# and with longer outages than `make test` gives them.
chaos: install-dev hypopg
	PERFPILOT_CHAOS_REPEAT=$${PERFPILOT_CHAOS_REPEAT:-5} PERFPILOT_CHAOS_OUTAGE_SECONDS=$${PERFPILOT_CHAOS_OUTAGE_SECONDS:-60} \
		PERFPILOT_CHAOS_PG_OUTAGE_SECONDS=$${PERFPILOT_CHAOS_PG_OUTAGE_SECONDS:-60} \
		PERFPILOT_CHAOS_REDIS_OUTAGE_SECONDS=$${PERFPILOT_CHAOS_REDIS_OUTAGE_SECONDS:-90} \
		$(PY) -m pytest -m chaos -p no:randomly $(PYTEST_ARGS)

# Benchmarks on their own embedded servers and data dir (var/bench), never the run or test data;
# raw retention is raised so the 30 days of raw samples they load are kept. Rewrites their
# sections of docs/benchmarks.md. BENCH_ARGS=query runs one.
# wrk drives the HTTP load benchmark; Debian's package, installed when run as root.
bench-tools:
	@if ! command -v wrk >/dev/null; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing Debian's wrk for the HTTP benchmark…"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
		else \
			echo "The http benchmark needs wrk: run 'sudo apt-get install wrk'." >&2; exit 1; \
		fi; \
	fi

# Lighthouse for the lighthouse benchmark: npm's pinned release, into a folder git ignores.
bench-lighthouse:
	@if [ ! -x bench/.lighthouse/node_modules/.bin/lighthouse ]; then \
		mkdir -p bench/.lighthouse && npm i -E --prefix bench/.lighthouse --no-audit --no-fund lighthouse@12.2.3; \
	fi

bench: install-dev bench-tools bench-lighthouse
	DJANGO_SETTINGS_MODULE=config.settings_test PERFPILOT_VAR_DIR=var/bench \
		PERFPILOT_EMBEDDED_PG_PORT=54379 PERFPILOT_EMBEDDED_REDIS_PORT=63799 \
		PERFPILOT_RETENTION_RAW_DAYS=45 $(PY) -m bench $(BENCH_ARGS)

# Stops the embedded servers and deletes all local data (accounts, history). Asks first.
clean-data: install
	@read -p "Delete var/ (all local Perfpilot data)? [y/N] " answer && [ "$$answer" = y ]
	-$(PY) manage.py embedded stop
	rm -rf var
