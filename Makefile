# `make run` and `make test` set everything up on a fresh machine (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test golden bench mutate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orchestrate run jobs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Rewrite the golden files from the code as it is now; review `git diff tests/` before committing.
golden: $(STAMP)
	$(BIN)/python -m pytest -q --update-golden tests/test_scenarios.py tests/test_golden.py \
		tests/test_loader.py::test_folder_loads_as_its_golden_file

bench: $(STAMP)
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

mutate: $(MUTMUT)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	@echo "mutants by module and outcome:"
	@$(BIN)/mutmut results --all true | sed -E 's/^ *orchestrator[.]([a-z_]+)[.].*: /\1 /' | sort | uniq -c
	@echo "survivors:"
	@$(BIN)/mutmut results | grep -v ': not checked$$' || true

clean:
	rm -rf $(VENV) .orchestrate jobs/.orchestrate mutants
