"""Every file in tests/broken/ is refused with the line, column and message in expected.txt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from orchestrator import loader
from orchestrator.errors import JobFileError, UsageError
from orchestrator.loader import load

BROKEN = Path(__file__).parent / "broken"


def expectations() -> list[tuple[str, int, int, str]]:
    """(file name, line, column, message substring) per line of expected.txt."""
    found = []
    for row in (BROKEN / "expected.txt").read_text(encoding="utf-8").splitlines():
        if row.strip():
            name, position, substring = row.split(" ", 2)
            line, column = position.split(":")
            found.append((name, int(line), int(column), substring))
    return found


EXPECTED = expectations()


def test_every_broken_file_has_exactly_one_expectation():
    names = [name for name, *_ in EXPECTED]
    assert len(names) == len(set(names))
    on_disk = {path.name for path in BROKEN.iterdir()} - {"expected.txt"}
    assert on_disk == set(names)
    assert len(names) >= 45


@pytest.mark.parametrize("name, line, column, substring", EXPECTED, ids=[row[0] for row in EXPECTED])
def test_broken_file_is_refused_at_its_spot(name, line, column, substring):
    path = str(BROKEN / name)
    with pytest.raises(JobFileError) as caught:
        load(path)
    error = caught.value
    assert (error.line, error.column) == (line, column), error.message
    assert substring in error.message
    assert str(error).startswith(f"{path}:{line}:{column}: ")


@pytest.mark.parametrize("name, line, column, substring", EXPECTED, ids=[row[0] for row in EXPECTED])
def test_the_pure_python_parser_refuses_it_at_the_same_spot(name, line, column, substring, monkeypatch):
    """libyaml when installed, PyYAML's own parser otherwise: the same errors either way, but
    for the parser's wording of a syntax error."""
    monkeypatch.setattr(loader, "_PARSER", yaml.SafeLoader)
    monkeypatch.setattr(loader, "_PARSER_TAKES_BYTES", False)
    with pytest.raises(JobFileError) as caught:
        load(str(BROKEN / name))
    error = caught.value
    assert (error.line, error.column) == (line, column), error.message
    if not substring.startswith(("invalid YAML:", "invalid character")):
        assert substring in error.message


def test_a_directory_is_refused(tmp_path):
    folder = tmp_path / "jobs.yaml"
    folder.mkdir()
    with pytest.raises(UsageError) as caught:
        load(str(folder))
    assert str(caught.value) == f"{folder} is a directory; pass the path of a YAML job file"


def test_a_missing_file_is_refused(tmp_path):
    missing = os.path.join(tmp_path, "nope", "jobs.yaml")
    with pytest.raises(UsageError) as caught:
        load(missing)
    assert str(caught.value) == f"no such file: {missing}"
