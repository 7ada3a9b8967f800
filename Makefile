# Every target that needs Python creates .venv first and installs the pinned dependencies:
# `make demo` only what the command needs at run time (requirements.lock), everything else
# (lint, test, ...) the dev tools on top (requirements-dev.lock), in the same venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime
STAMP  := $(VENV)/.installed
DIST   := ecr-lifecycle-cleaner
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=
SOURCES := cleaner tests $(wildcard bench)

.PHONY: demo test fuzz lint format bench audit lock clean screenshot

$(RUNTIME_STAMP): pyproject.toml setup.py requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(PIP) -r requirements.lock -r requirements-dev.lock -e '.[dev]'
	touch $(STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/ecr-cleaner demo

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy cleaner
	$(BIN)/lint-imports
	BIN=$(BIN) scripts/lint-deploy.sh

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The property, fuzz and schemathesis tests with fresh random examples (make test replays
# fixed ones); run it a few times before a release, and pin what it finds as a test case.
FUZZ_TESTS := tests/test_receiver_fuzz.py tests/test_schemathesis.py tests/test_differential.py \
	tests/test_planner.py tests/test_protections.py tests/test_graph.py tests/test_receiver_events.py \
	tests/test_references.py
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=explore $(BIN)/pytest $(FUZZ_TESTS) $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

# The full benchmark (12 minutes on a 2-core machine); writes bench/RESULTS.md, exits 1 if a target fails.
bench: $(STAMP)
	$(BIN)/python bench/run.py --json bench/results.json --markdown bench/RESULTS.md

# The README's picture of the HTML report (the demo registry's plan, in headless Chromium).
screenshot: $(STAMP)
	$(BIN)/python scripts/report-screenshot.py docs/plan-report.png

# Known vulnerabilities in the pinned dependencies (pip-audit; needs PyPI's JSON API).
audit: $(STAMP)
	scripts/audit-deps.sh

# Re-pin: resolve the ranges in pyproject.toml in throwaway venvs and freeze them.
lock:
	rm -rf /tmp/ecr-cleaner-lock && $(PYTHON) -m venv /tmp/ecr-cleaner-lock
	/tmp/ecr-cleaner-lock/bin/pip install --quiet .
	{ echo "# Runtime pins: the Dockerfile and 'make' install from this file. Regenerate with 'make lock'."; \
	  /tmp/ecr-cleaner-lock/bin/pip freeze --exclude $(DIST); } > requirements.lock
	/tmp/ecr-cleaner-lock/bin/pip install --quiet '.[dev]'
	{ echo "# Development pins (tests, lint), on top of requirements.lock. Regenerate with 'make lock'."; \
	  /tmp/ecr-cleaner-lock/bin/pip freeze --exclude $(DIST); } > requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
