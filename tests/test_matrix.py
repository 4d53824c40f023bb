"""Matrix names: built, parsed and matched the same way for `needs:` and the command line."""

import pytest
from conftest import run_cli

from orchestrator.matrix import MatrixIndex, base_name, expansion_name, parse_selector

T = {
    "t[OS=linux,PY=3.11]": {"OS": "linux", "PY": "3.11"},
    "t[OS=linux,PY=3.12]": {"OS": "linux", "PY": "3.12"},
    "t[OS=mac,PY=3.12]": {"OS": "mac", "PY": "3.12"},
    "lint": {},
}
INDEX = MatrixIndex.of(T.items())


def test_expansion_name_keeps_key_order_and_base_name_undoes_it():
    name = expansion_name("build", {"ARCH": "arm64", "OS": "linux"})
    assert name == "build[ARCH=arm64,OS=linux]"
    assert base_name(name) == "build"
    assert base_name("lint") == "lint"


def test_parse_selector_takes_any_order_and_spaces_after_commas():
    assert parse_selector("t[PY=3.12, OS=linux]") == ("t", {"PY": "3.12", "OS": "linux"})
    assert parse_selector("t[URL=a,b,OS=linux]") == ("t", {"URL": "a,b", "OS": "linux"})
    assert parse_selector("t") is None
    assert parse_selector("t[OS]") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t", ["t[OS=linux,PY=3.11]", "t[OS=linux,PY=3.12]", "t[OS=mac,PY=3.12]"]),
        ("t[OS=linux]", ["t[OS=linux,PY=3.11]", "t[OS=linux,PY=3.12]"]),
        ("t[PY=3.12,OS=linux]", ["t[OS=linux,PY=3.12]"]),
        ("t[OS=linux, PY=3.12]", ["t[OS=linux,PY=3.12]"]),
        ("t[OS=linux,PY=3.12]", ["t[OS=linux,PY=3.12]"]),
        ("lint", ["lint"]),
        ("t[OS=windows]", []),
        ("t[ARCH=x]", []),
        ("nothing", []),
    ],
)
def test_resolve(text, expected):
    assert INDEX.resolve(text) == expected


MATRIX_FILE = """\
jobs:
  t:
    run: echo "$OS $PY"
    matrix: {OS: [linux, mac], PY: ["3.11", "3.12"]}
  after:
    run: "true"
    needs: ["t[PY=3.12, OS=linux]"]
"""


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ("t[OS=linux]", ["t[OS=linux,PY=3.11]", "t[OS=linux,PY=3.12]"]),
        ("t[PY=3.12,OS=linux]", ["t[OS=linux,PY=3.12]"]),
        ("t[OS=linux, PY=3.12]", ["t[OS=linux,PY=3.12]"]),
    ],
)
def test_command_line_selects_as_needs_does(write_jobs, selector, selected):
    path = write_jobs(MATRIX_FILE)
    result = run_cli("run", path, selector, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == selected


def test_needs_selector_with_spaces_and_any_order_resolves(write_jobs):
    path = write_jobs(MATRIX_FILE)
    result = run_cli("run", path, "after", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["t[OS=linux,PY=3.12]", "after"]


def test_unmatched_selector_is_a_usage_error_with_a_hint(write_jobs):
    path = write_jobs(MATRIX_FILE)
    result = run_cli("run", path, "t[OS=windows]", "--dry-run")
    assert result.returncode == 2
    assert (
        result.stderr
        == 'orchestrate: error: no job named "t[OS=windows]"; t takes OS=linux|mac, PY=3.11|3.12\n'
    )


def test_unmatched_need_selector_names_the_values(write_jobs):
    path = write_jobs(MATRIX_FILE.replace("PY=3.12, OS=linux", "PY=3.13"))
    result = run_cli("validate", path)
    assert result.returncode == 2
    assert result.stderr == f'{path}:7:13: unknown need "t[PY=3.13]"; t takes OS=linux|mac, PY=3.11|3.12\n'
