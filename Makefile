# `make run` and `make test` set everything up on a fresh machine (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test golden bench clean

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

clean:
	rm -rf $(VENV) .orchestrate jobs/.orchestrate
