"""`orchestrate schema`: what the loader accepts validates; what it refuses for its shape is refused."""

import glob
import json
import os
import re

import jsonschema
import pytest
import yaml
from conftest import run_cli

from orchestrator.errors import JobFileError
from orchestrator.loader import _DEFAULT_KEYS, _JOB_KEYS, _TOP_KEYS, load, load_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKEN = os.path.join(ROOT, "tests", "broken")
GOOD = sorted(
    glob.glob(os.path.join(ROOT, "jobs", "**", "*.yaml"), recursive=True)
    + glob.glob(os.path.join(ROOT, "tests", "scenarios", "*", "jobs.yaml"))
)
# Refused for what they mean, which no schema of the shape can see: cycles, names that do
# not resolve, capacities, duplicate keys (a YAML library keeps the last), the alias budget.
NOT_SCHEMA_DETECTABLE = {
    "cycle.yaml",
    "cycle_matrix.yaml",
    "cycle_self.yaml",
    "cycle_three.yaml",
    "defaults_over_capacity.yaml",
    "duplicate_job.yaml",
    "duplicate_key_in_job.yaml",
    "duplicate_top_key.yaml",
    "path_unknown_variable.yaml",  # which variables a job has is the loader's to know
    "resource_over_capacity.yaml",
    "resource_undeclared.yaml",
    "resource_undeclared_none.yaml",
    "shell_unbalanced_quote.yaml",  # shell words are split by shlex, beyond a pattern
    "unknown_need.yaml",
    "unknown_need_selector.yaml",
}


@pytest.fixture(scope="module")
def validator():
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return jsonschema.Draft202012Validator(schema)


def readme_example() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        return re.search(r"```yaml\n(.*?)```", readme.read(), re.DOTALL)[1]


def test_the_schema_covers_every_key_of_the_loader(validator):
    schema = validator.schema
    assert list(schema["properties"]) == list(_TOP_KEYS)
    assert list(schema["$defs"]["job"]["properties"]) == list(_JOB_KEYS)
    assert list(schema["$defs"]["defaults"]["properties"]) == list(_DEFAULT_KEYS)


@pytest.mark.parametrize("path", GOOD, ids=[os.path.relpath(p, ROOT) for p in GOOD])
def test_every_good_file_validates(validator, path):
    load(path)  # the loader accepts it
    with open(path, encoding="utf-8") as stream:
        errors = list(validator.iter_errors(yaml.safe_load(stream)))
    assert not errors, [error.message for error in errors]


def test_the_readme_example_validates(validator):
    text = readme_example()
    load_text(text, "README.md")
    assert not list(validator.iter_errors(yaml.safe_load(text)))


def test_variables_in_paths_validate(validator):
    text = (
        "env: {OUT: build}\njobs:\n  build:\n    matrix: {OS: [linux, mac]}\n"
        '    run: "echo $OS > $OUT/$OS.txt"\n    outputs: ["${OUT}/$OS.txt", cost-$$1-$OS.txt]\n'
        "  use:\n    run: cat build/linux.txt\n    inputs: [$OUT/linux.txt]\n"
    )
    assert load_text(text, "jobs.yaml").jobs["use"].needs == ("build[OS=linux]",)
    assert not list(validator.iter_errors(yaml.safe_load(text)))


def broken_files() -> list[str]:
    return sorted(name for name in os.listdir(BROKEN) if name != "expected.txt")


@pytest.mark.parametrize("name", broken_files())
def test_every_file_refused_for_its_shape_is_refused_by_the_schema(validator, name):
    path = os.path.join(BROKEN, name)
    with pytest.raises(JobFileError):
        load(path)
    try:
        with open(path, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError):
        return  # not YAML an editor could read either: nothing for a schema to check
    # The first error is enough, and the only way through an alias bomb's expansion.
    errors = [error for error in [next(validator.iter_errors(document), None)] if error]
    if name in NOT_SCHEMA_DETECTABLE:
        assert not errors, f"{name} is caught by the schema after all: drop it from the list"
    else:
        assert errors, f"the schema accepts {name}, which the loader refuses for its shape"


def test_the_readme_shows_the_editor_line():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        assert "# yaml-language-server: $schema=" in readme.read()
