"""Golden files: what a run printed, with its volatile parts normalised, compared to a file.

Normalised (everything else is compared exactly):
- the scenario's temporary folder becomes `<dir>` and the run id `<run-id>`, wherever they occur;
- from the results table on, every duration becomes `<dur>`: in the duration column (blank
  stays blank, the column keeps its width), on the summary line (`4 ok in <dur>`) and any
  other line there;
- the critical path under the table becomes `critical path: <path> (<dur> of <dur>)`:
  which of two parallel chains ends last is timing (tests/test_trace.py checks the path);
- grouped output blocks (`--- job (status) ---` and what follows) are sorted by their header:
  parallel jobs end in any order, so the order is not checked here, each block's text is;
- in the JSON report, every timestamp (`started`, `start`, `end`, `ready`, ...), `run_id`,
  `elapsed`, `duration`, any `..._seconds`, `host`, `slot`, `critical_path`, and the elapsed
  time of `summary`; in JUnit XML, the `time` and `timestamp` attributes.
A null stays null: a job that never started still reads as one.
Two things to keep out of the table: absolute temporary paths (the last column is cut at 80
characters and the dashes under it are as wide as its text), and more than one job under
`--output stream` (their lines interleave by timing).
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import pytest

UPDATE_OPTION = "--update-golden"
REFRESH_COMMAND = "make golden"

# The shapes report.format_duration gives: 0.4s, 12.3s, 4m05s, 1h02m03s.
_DURATION = re.compile(r"\b(?:\d+h\d\dm\d\ds|\d+m\d\ds|\d+\.\ds)\b")
_TABLE_HEADER = re.compile(r"^job +status +exit +attempts +duration +last output$")
_BLOCK_HEADER = re.compile(r"^--- .+ \(.+\) ---$")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?")
_CRITICAL_PATH = re.compile(r"^critical path: .+ \(")
_VOLATILE_JSON = {
    "run_id": "<run-id>",
    "elapsed": "<seconds>",
    "duration": "<seconds>",
    "host": "<host>",
    "slot": "<slot>",
    "critical_path": "<path>",
}


def replace_known(text: str, folder: str, run_id: str | None) -> str:
    """The temporary folder and the run id, which differ every run, by placeholders."""
    text = text.replace(folder, "<dir>")
    return text.replace(run_id, "<run-id>") if run_id else text


def normalise_stdout(text: str, folder: str, run_id: str | None = None) -> str:
    lines = replace_known(text, folder, run_id).splitlines(keepends=True)
    table_at = next((i for i, line in enumerate(lines) if _TABLE_HEADER.match(line)), len(lines))
    return "".join(sort_blocks(lines[:table_at]) + normalise_table(lines[table_at:]))


def sort_blocks(lines: list[str]) -> list[str]:
    """Grouped output blocks sorted by header; lines before the first block stay first."""
    lead: list[str] = []
    blocks: list[list[str]] = []
    for line in lines:
        if _BLOCK_HEADER.match(line.rstrip("\n")):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
        else:
            lead.append(line)
    return lead + [line for block in sorted(blocks) for line in block]


def normalise_table(lines: list[str]) -> list[str]:
    """Durations out of the results table and the lines under it (summary, critical path).

    The duration column keeps its width, so the rows stay aligned with the header."""
    if len(lines) < 2:
        return lines
    header, dashes, *rest = lines
    start, end = _column_span(header, dashes, "duration")
    normalised = [header, dashes]
    for line in rest:
        if _DURATION.fullmatch(line[start:end].strip()):
            line = line[:start] + "<dur>".rjust(end - start) + line[end:]
        line = _CRITICAL_PATH.sub("critical path: <path> (", line)
        normalised.append(_DURATION.sub("<dur>", line))
    return normalised


def _column_span(header: str, dashes: str, title: str) -> tuple[int, int]:
    """Where the column headed `title` is, from the run of dashes under it."""
    at = header.index(title)
    for run in re.finditer(r"-+", dashes):
        if run.start() <= at < run.end():
            return run.start(), run.end()
    raise ValueError(f"no dashes under {title!r} in {dashes!r}")


def normalise_json(text: str, folder: str) -> str:
    report = json.loads(text)
    run_id = report.get("run_id")

    def walk(value: Any, key: str | None = None) -> Any:
        if value is None:
            return None
        if key in _VOLATILE_JSON:
            return _VOLATILE_JSON[key]
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        if key and key.endswith("_seconds"):
            return "<seconds>"
        if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
            return "<time>"
        if key == "summary":
            return _DURATION.sub("<dur>", value)
        return replace_known(value, folder, run_id) if isinstance(value, str) else value

    return json.dumps(walk(report), indent=2, ensure_ascii=False) + "\n"


def normalise_junit(text: str, folder: str, run_id: str | None = None) -> str:
    text = re.sub(r' time="[0-9.]+"', ' time="<seconds>"', text)
    text = re.sub(r' timestamp="[^"]*"', ' timestamp="<time>"', text)
    return replace_known(text, folder, run_id)


class GoldenFiles:
    """Compares output to golden files, or with --update-golden rewrites them.

    While updating, the first run of a session to reach a golden file writes it and every
    later one is compared to it, so the runs of one scenario under --processes 1 and 2 still
    have to agree: a difference between them is a bug, not something to refresh away.
    """

    def __init__(self, update: bool) -> None:
        self.update = update
        self.written: set[Path] = set()

    def check(self, path: Path, actual: str) -> None:
        if self.update and path not in self.written:
            self.written.add(path)
            path.parent.mkdir(exist_ok=True)
            if not path.exists() or path.read_text(encoding="utf-8") != actual:
                path.write_text(actual, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(
                f"{path} is missing: create it with `{REFRESH_COMMAND}`, then review it", pytrace=False
            )
        expected = path.read_text(encoding="utf-8")
        if actual != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    fromfile=str(path),
                    tofile="this run",
                )
            )
            if path in self.written:
                advice = "an earlier run in this session wrote something else (--processes 1 and 2?)"
            else:
                advice = f"if the change is intended, refresh with `{REFRESH_COMMAND}` and review the diff"
            pytest.fail(f"output differs from {path}: {advice}\n{diff}", pytrace=False)
