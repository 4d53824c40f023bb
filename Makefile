# `make run` and `make test` set everything up on a fresh machine (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test lint golden bench mutate clean

help: ## list these targets
	@echo "make targets:"
	@awk -F':.*## ' '/^[a-z]+:.*## / {printf "  make %-7s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "then: $(BIN)/orchestrate --help (or pipx install . to have orchestrate on PATH)"

# pip 21.3 is the first to install a pyproject.toml project in editable mode (PEP 660);
# a fresh venv's own pip (23.2 with Python 3.11) is newer, so it is upgraded only when older.
# setuptools warns at every editable install that a same-named folder could shadow the package:
# that is the point here, so the warning is silenced to keep `make run` to the demo's output.
# editable_mode=compat puts the checkout on sys.path with a plain .pth line. The default mode's
# import finder costs every start ~20 ms (it imports pathlib, urllib and importlib.util): a
# fifth of a short run's start, which an installed orchestrate never pays.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (once, or after pyproject.toml changes)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (21, 3))' \
		|| $(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	@touch $(STAMP)

run: $(STAMP) ## create .venv if needed, then run the demo (jobs/demo.yaml)
	@$(BIN)/orchestrate run -f jobs/demo.yaml

# Branch coverage of the package, measured in the test process; the floor is the level the
# suite reached (71.15% and 71.19% in two runs) less the point that timing-dependent branches
# move it by, so coverage cannot fall silently and a noisy run does not fail. Raise it when
# you add tests.
COVERAGE_FLOOR := 70

# Most tests wait on real child processes, so one pytest leaves a core idle: the suite runs on
# TEST_WORKERS pytest-xdist workers (the dask module's tests on one, sharing one cluster), then
# the tests marked `serial` run alone, as each asserts a wall-clock bound on work in its own
# process that a second worker's load stretches (a 2 s test failed its 10 s bound under -n 2).
# The second pass appends its coverage to the first's, then reports and checks the floor.
# PYTHONDONTWRITEBYTECODE (set on some machines) is cleared: else every orchestrate the tests
# start compiles the package anew (~60 ms of a ~200 ms start) and pytest rewrites and compiles
# every test module in every process that collects them.
TEST_WORKERS ?= 2
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

test: lint ## create .venv if needed, lint, then run the whole test suite with coverage
	$(PYTEST) -q -n $(TEST_WORKERS) --dist loadgroup -m "not serial" --cov --cov-report=
	$(PYTEST) -q -m serial --cov --cov-append --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

lint: $(STAMP) ## ruff (lint and format check) and mypy --strict on the package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Rewrite the golden files from the code as it is now; review `git diff tests/` before committing.
golden: $(STAMP) ## rewrite the golden files (review git diff tests/ before committing)
	$(BIN)/python -m pytest -q --update-golden tests/test_scenarios.py tests/test_golden.py \
		tests/test_loader.py::test_folder_loads_as_its_golden_file

bench: $(STAMP) ## time orchestrate against make, ninja, xargs and GNU parallel
	$(BIN)/python bench/bench.py

# Mutation testing (mutmut, configured in pyproject.toml): slow, so not part of `make test`,
# and its tool (libcst, textual) is big, so it is installed only when asked for.
# `make mutate MUTANTS='orchestrator.gates*'` runs only some; the survivors are listed at the
# end, `.venv/bin/mutmut show NAME` shows one.
MUTMUT := $(VENV)/.mutmut
MUTANTS ?=

$(MUTMUT): $(STAMP)
	$(BIN)/python -m pip install -q 'mutmut>=3.8,<4'
	touch $(MUTMUT)

mutate: $(MUTMUT) ## mutation testing of the core (slow; not part of make test)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	@echo "mutants by module and outcome:"
	@$(BIN)/mutmut results --all true | sed -E 's/^ *orchestrator[.]([a-z_]+)[.].*: /\1 /' | sort | uniq -c
	@echo "survivors:"
	@$(BIN)/mutmut results | grep -v ': not checked$$' || true

clean: ## remove .venv, run state and mutants
	rm -rf $(VENV) .orchestrate jobs/.orchestrate mutants
