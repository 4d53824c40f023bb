"""Tests for orchestrator.report: the table, JSON and JUnit files, list and graph output."""

from __future__ import annotations

import json
import os
import re
import signal
import xml.etree.ElementTree as ET

import pytest
from junitparser import Failure, JUnitXml, Skipped
from tabulate import tabulate_formats

from orchestrator.model import Job, JobFile
from orchestrator.report import (
    render_graph,
    render_job_list,
    render_table,
    terminal_safe,
    write_report_file,
)
from orchestrator.results import JobResult, RunSummary, Status, StopReason

ANSI = re.compile(r"\x1b\[[0-9;]*m")
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NASTY = bytes(range(0x20)) + b"\x7f\x80\xff\xfe bad \xed\xa0\x80 end\n"


def result(name, status, **fields) -> JobResult:
    return JobResult(name=name, status=status, **fields)


def ran(name, status, exit_code=None, seconds=1.25, **fields) -> JobResult:
    """A job that started and ended, by default after 1.25 seconds."""
    fields.setdefault("attempts", 1)
    return result(name, status, exit_code=exit_code, start=T0, end=T0 + seconds, **fields)


@pytest.fixture
def summary() -> RunSummary:
    return RunSummary(
        results=[
            ran("lint", Status.OK, 0, tail="all good\n"),
            ran("build[ARCH=x86_64]", Status.FAILED, 2, attempts=3, tail="cc: error: nope\n\n"),
            ran("killed", Status.FAILED, signal=int(signal.SIGKILL), tail="working...\n"),
            ran("slow", Status.TIMEOUT, signal=int(signal.SIGTERM), seconds=30, tail="tick\n"),
            ran("flaky", Status.ALLOWED, 1, tail="known issue\n"),
            result("unit", Status.SKIPPED, reason="needs build[ARCH=x86_64], which failed"),
            result("deploy", Status.CANCELLED, reason="run stopped after a failure"),
            ran("serve", Status.INTERRUPTED, signal=int(signal.SIGTERM), tail="listening\n"),
            result("docs", Status.RESUMED, attempts=0),
        ],
        elapsed=42.0,
    )


# The fixture's counts in Status order, by hand: the code's own summary_line() proves nothing.
SUMMARY_LINE = (
    "1 ok, 2 failed, 1 timeout, 1 allowed, 1 skipped, 1 cancelled, 1 interrupted, 1 ok (resumed) in 42.0s"
)


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of a `plain` table keyed by job name, split on runs of 2+ spaces."""
    rows = {}
    for line in text.splitlines()[1:-1]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def column(text: str, header: str, job: str) -> str:
    """The cell under `header` in `job`'s row of a `simple` table (by character position)."""
    lines = text.splitlines()
    rule = lines[1]
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    headers = [lines[0][a:b].strip() for a, b in spans]
    row = next(line for line in lines[2:] if line.startswith(job + " "))
    a, b = spans[headers.index(header)]
    return row[a:b].strip()


# -- the table ------------------------------------------------------------------------------


def test_table_has_one_row_per_job_and_the_summary_line(summary):
    text = render_table(summary)
    lines = text.splitlines()
    assert lines[0].split() == ["job", "status", "exit", "attempts", "duration", "last", "output"]
    assert len(lines) == 2 + len(summary.results) + 1
    assert lines[-1] == SUMMARY_LINE


@pytest.mark.parametrize(
    "job, status, exit, attempts, duration",
    [
        ("lint", "ok", "0", "1", "1.2s"),
        ("build[ARCH=x86_64]", "failed", "2", "3", "1.2s"),
        ("killed", "failed", "SIGKILL", "1", "1.2s"),
        ("slow", "timeout", "SIGTERM", "1", "30.0s"),
        ("flaky", "allowed", "1", "1", "1.2s"),
        ("unit", "skipped", "", "0", ""),
        ("deploy", "cancelled", "", "0", ""),
        ("serve", "interrupted", "SIGTERM", "1", "1.2s"),
        ("docs", "ok (resumed)", "", "0", ""),
    ],
)
def test_table_cells_per_status(summary, job, status, exit, attempts, duration):
    text = render_table(summary)
    assert column(text, "status", job) == status
    assert column(text, "exit", job) == exit
    assert column(text, "attempts", job) == attempts
    assert column(text, "duration", job) == duration


@pytest.mark.parametrize(
    "job, last_output",
    [
        ("lint", ""),
        ("docs", ""),
        ("build[ARCH=x86_64]", "cc: error: nope"),
        ("killed", "working..."),
        ("slow", "tick"),
        ("flaky", "known issue"),
        ("unit", "needs build[ARCH=x86_64], which failed"),
        ("deploy", "run stopped after a failure"),
        ("serve", "listening"),
    ],
)
def test_last_output_only_for_jobs_that_did_not_succeed(summary, job, last_output):
    assert column(render_table(summary), "last output", job) == last_output


def test_long_last_line_is_trimmed():
    summary = RunSummary([ran("j", Status.FAILED, 1, tail="x" * 500)])
    cell = column(render_table(summary), "last output", "j")
    assert 60 <= len(cell) <= 80
    assert cell.endswith("…")


def test_durations_past_a_minute_read_as_minutes_and_hours():
    summary = RunSummary([ran("m", Status.OK, seconds=125), ran("h", Status.OK, seconds=3723)])
    text = render_table(summary)
    assert column(text, "duration", "m") == "2m05s"
    assert column(text, "duration", "h") == "1h02m03s"


def test_numeric_looking_names_stay_text():
    summary = RunSummary([ran("1e3", Status.OK, 0), ran("007", Status.OK, 0)])
    rows = table_rows(render_table(summary, "plain"))
    assert set(rows) == {"1e3", "007"}


def test_empty_run_renders_headers_and_summary():
    text = render_table(RunSummary([], elapsed=0.0))
    assert "job" in text.splitlines()[0]
    assert text.splitlines()[-1] == "no jobs in 0.0s"


# -- making output safe ---------------------------------------------------------------------


def test_control_characters_and_escape_sequences_never_reach_the_terminal():
    tail = (
        "\x1b[2J\x1b[31mred\x1b[0m \x1b]0;pwned title\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
        " \x1bc\x1b(B\x9b31m\x07bell\x08\x00\x7f \u202eevil\u202c \udcff end\r"
    )
    summary = RunSummary([ran("j", Status.FAILED, 1, tail=tail)])
    for color in (False, True):
        text = ANSI.sub("", render_table(summary, color=color))
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\ud800-\udfff]", text)
    cell = column(render_table(summary), "last output", "j")
    assert cell == "red link bell evil \ufffd end"


def test_terminal_safe_keeps_ordinary_unicode():
    assert terminal_safe("naïve — 日本語 ✓") == "naïve — 日本語 ✓"
    assert terminal_safe("a\tb\nc") == "a b c"


def test_nasty_job_output_decoded_with_surrogateescape_is_made_printable():
    tail = NASTY.decode("utf-8", "surrogateescape")
    text = render_table(RunSummary([ran("j", Status.FAILED, 1, tail=tail)]))
    text.encode("utf-8")  # no lone surrogate left to break a strict terminal encoding
    assert "bad" in column(text, "last output", "j")


# -- table formats and color ----------------------------------------------------------------


@pytest.mark.parametrize("table_format", tabulate_formats)
def test_every_tabulate_format_renders(summary, table_format):
    text = render_table(summary, table_format)
    assert "killed" in text and "SIGKILL" in text and "cc: error: nope" in text
    assert text.splitlines()[-1] == SUMMARY_LINE


@pytest.mark.parametrize("table_format", tabulate_formats)
def test_color_output_is_aligned_like_the_plain_output(summary, table_format):
    plain = render_table(summary, table_format)
    colored = render_table(summary, table_format, color=True)
    assert ANSI.sub("", colored) == plain


@pytest.mark.parametrize(
    "job, code",
    [
        ("build[ARCH=x86_64]", "31"),
        ("slow", "31"),
        ("serve", "31"),
        ("unit", "33"),
        ("deploy", "33"),
        ("lint", "32"),
    ],
)
def test_status_colors(summary, job, code):
    lines = render_table(summary, color=True).splitlines()
    row = next(line for line in lines if line.startswith(job + " "))
    status = str(next(r.status for r in summary.results if r.name == job))
    assert f"\x1b[{code}m{status}\x1b[0m" in row


def test_color_is_left_out_of_markup_formats(summary):
    assert "\x1b" not in render_table(summary, "html", color=True)


def test_unknown_table_format_lists_the_valid_ones(summary):
    with pytest.raises(ValueError, match="unknown table format 'fancy'") as error:
        render_table(summary, "fancy")
    assert "github" in str(error.value) and "grid" in str(error.value)


# -- the JSON report ------------------------------------------------------------------------


def test_json_report_round_trips(tmp_path, summary):
    path = tmp_path / "report.json"
    run_info = {"job_file": "ci/jobs.yml", "run_id": "r-123", "started": T0}
    write_report_file(str(path), summary, run_info)
    report = json.loads(path.read_text("utf-8"))
    assert report["job_file"] == "ci/jobs.yml"
    assert report["run_id"] == "r-123"
    assert report["started"] == "2023-11-14T22:13:20.000Z"
    assert report["exit_code"] == 1
    assert report["elapsed"] == 42.0
    assert [job["name"] for job in report["jobs"]] == [r.name for r in summary.results]


def test_json_report_job_fields(tmp_path, summary):
    path = tmp_path / "report.json"
    write_report_file(str(path), summary, {})
    jobs = {job["name"]: job for job in json.loads(path.read_text("utf-8"))["jobs"]}
    assert set(jobs["lint"]) == {
        "name",
        "status",
        "exit_code",
        "signal",
        "attempts",
        "start",
        "end",
        "duration",
        "log_path",
        "reason",
        "timed_out",
        "ready",
        "slot",
        "host",
        "tries",
    }
    assert jobs["lint"] | {"log_path": None} == {
        "name": "lint",
        "status": "ok",
        "exit_code": 0,
        "signal": None,
        "attempts": 1,
        "start": "2023-11-14T22:13:20.000Z",
        "end": "2023-11-14T22:13:21.250Z",
        "duration": 1.25,
        "log_path": None,
        "reason": "",
        "timed_out": False,
        "ready": None,
        "slot": None,
        "host": None,
        # A result without attempt records (an old one) reads as one attempt spanning the job.
        "tries": [
            {
                "attempt": 1,
                "start": "2023-11-14T22:13:20.000Z",
                "end": "2023-11-14T22:13:21.250Z",
                "duration": 1.25,
                "exit_code": 0,
                "signal": None,
                "timed_out": False,
                "slot": None,
                "host": None,
            }
        ],
    }
    assert jobs["killed"]["signal"] == "SIGKILL" and jobs["killed"]["exit_code"] is None
    assert jobs["unit"]["start"] is None and jobs["unit"]["duration"] is None
    assert jobs["unit"]["reason"].startswith("needs build")
    assert jobs["docs"]["status"] == "ok (resumed)"


def test_json_report_exit_code_follows_stop_reason(tmp_path):
    path = tmp_path / "r.json"
    summary = RunSummary([ran("a", Status.INTERRUPTED, signal=15)], stop_reason=StopReason.SIGINT)
    write_report_file(str(path), summary, {})
    report = json.loads(path.read_text("utf-8"))
    assert report["exit_code"] == 130
    assert report["stop_reason"] == "interrupt"


def test_json_report_with_surrogates_is_strict_utf8(tmp_path):
    path = tmp_path / "r.json"
    bad = NASTY.decode("utf-8", "surrogateescape")
    write_report_file(str(path), RunSummary([result("j", Status.SKIPPED, reason=bad)]), {})
    data = path.read_bytes()
    data.decode("utf-8")  # strict
    assert "\\ud" not in data.decode("utf-8")
    assert json.loads(data)["jobs"][0]["reason"].endswith("end\n")


# -- the JUnit report -----------------------------------------------------------------------


def write_junit(tmp_path, summary, run_info=None) -> str:
    path = str(tmp_path / "junit.xml")
    write_report_file(path, summary, run_info or {"started": T0})
    return path


def test_junit_counts_and_elements(tmp_path, summary):
    root = ET.parse(write_junit(tmp_path, summary)).getroot()
    assert root.tag == "testsuites"
    (suite,) = root
    assert suite.tag == "testsuite"
    assert suite.attrib | {"timestamp": ""} == {
        "name": "orchestrate",
        "tests": "9",
        "failures": "4",
        "errors": "0",
        "skipped": "2",
        "time": "42.000",
        "timestamp": "",
    }
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == [r.name for r in summary.results]
    assert all(case.get("classname") == "orchestrate" for case in cases.values())
    assert cases["slow"].get("time") == "30.000"
    assert cases["unit"].get("time") == "0.000"
    for name in ("build[ARCH=x86_64]", "killed", "slow", "serve"):
        assert cases[name].find("failure") is not None, name
    assert cases["build[ARCH=x86_64]"].find("failure").get("message") == "exit code 2"
    assert "cc: error: nope" in cases["build[ARCH=x86_64]"].find("failure").text
    assert cases["killed"].find("failure").get("message") == "killed by SIGKILL"
    assert cases["slow"].find("failure").get("message") == "timed out"
    assert cases["unit"].find("skipped").get("message").startswith("needs build")
    assert cases["deploy"].find("skipped") is not None
    assert list(cases["lint"]) == [] and list(cases["docs"]) == []
    flaky = cases["flaky"]
    assert flaky.find("failure") is None and flaky.find("skipped") is None
    assert "allowed to fail" in flaky.find("system-out").text


def test_junit_is_read_by_junitparser(tmp_path, summary):
    xml = JUnitXml.fromfile(write_junit(tmp_path, summary))
    (suite,) = list(xml)
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == (
        "orchestrate",
        9,
        4,
        0,
        2,
    )
    assert suite.time == pytest.approx(42.0)
    outcomes = {}
    for case in suite:
        kinds = {type(r) for r in case.result}
        outcome = "failure" if Failure in kinds else "skipped" if Skipped in kinds else "pass"
        outcomes[case.name] = outcome
    assert outcomes == {
        "lint": "pass",
        "build[ARCH=x86_64]": "failure",
        "killed": "failure",
        "slow": "failure",
        "flaky": "pass",
        "unit": "skipped",
        "deploy": "skipped",
        "serve": "failure",
        "docs": "pass",
    }


def test_junit_stays_valid_with_nasty_output(tmp_path):
    bad = NASTY.decode("utf-8", "surrogateescape") + "\x1b[31mred\x1b[0m \ufffe\uffff ]]> <&>'\""
    summary = RunSummary(
        [
            ran("weird\x01name", Status.FAILED, 1, tail=bad, reason=bad),
            result("s", Status.SKIPPED, reason=bad),
            ran("a", Status.ALLOWED, 1, tail=bad),
        ]
    )
    path = write_junit(tmp_path, summary)
    root = ET.parse(path).getroot()
    failure = root.find("./testsuite/testcase/failure")
    assert "bad" in failure.text and "red" in failure.text and "[31m" not in failure.text
    assert failure.text.endswith("]]> <&>'\"")
    assert root.find("./testsuite/testcase").get("name") == "weirdname"
    assert JUnitXml.fromfile(path).failures == 1


# -- writing files --------------------------------------------------------------------------


def test_unknown_report_extension_names_the_supported_ones(tmp_path, summary):
    with pytest.raises(ValueError, match=r"\.json.*\.xml"):
        write_report_file(str(tmp_path / "report.txt"), summary, {})
    assert os.listdir(tmp_path) == []


def test_report_write_is_atomic_and_leaves_no_temp_files(tmp_path, summary):
    path = tmp_path / "reports" / "out.json"
    path.parent.mkdir()
    path.write_text("old")
    write_report_file(str(path), summary, {})
    assert json.loads(path.read_text("utf-8"))["jobs"]
    assert os.listdir(path.parent) == ["out.json"]


def test_failed_write_keeps_the_old_report_and_no_temp_file(tmp_path, summary, monkeypatch):
    path = tmp_path / "out.xml"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report_file(str(path), summary, {})
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.xml"]


def test_report_file_honours_the_umask(tmp_path, summary):
    old = os.umask(0o022)
    try:
        write_report_file(str(tmp_path / "r.xml"), summary, {})
    finally:
        os.umask(old)
    assert (tmp_path / "r.xml").stat().st_mode & 0o777 == 0o644


# -- list and graph -------------------------------------------------------------------------


@pytest.fixture
def jobfile() -> JobFile:
    jobs = [
        Job("lint", "ruff check .", tags=("fast",), description="static checks"),
        Job("build[ARCH=x86_64]", "make", needs=("lint",), resources={"heavy": 2}),
        Job("build[ARCH=arm64]", "make", needs=("lint",), resources={"heavy": 1, "db": 1}),
        Job(
            "unit-tests.v2",
            ("pytest", "-q"),
            needs=("build[ARCH=x86_64]", "build[ARCH=arm64]"),
            tags=("slow", "ci"),
            description='runs "all" the tests\non two lines',
        ),
    ]
    return JobFile(path="jobs.yml", jobs={job.name: job for job in jobs})


def test_job_list_table(jobfile):
    lines = render_job_list(jobfile).splitlines()
    assert lines[0].split() == ["name", "command", "needs", "resources", "tags", "description"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == list(jobfile.jobs)
    assert "ruff check ." in rows["lint"] and "pytest -q" in rows["unit-tests.v2"]
    assert "fast" in rows["lint"] and "static checks" in rows["lint"]
    assert "heavy:2" in rows["build[ARCH=x86_64]"]
    assert "heavy, db" in rows["build[ARCH=arm64]"]
    assert "build[ARCH=x86_64], build[ARCH=arm64]" in rows["unit-tests.v2"]
    assert 'runs "all" the tests on two lines' in rows["unit-tests.v2"]


def test_job_list_takes_any_format_and_rejects_unknown(jobfile):
    assert "| lint" in render_job_list(jobfile, "github")
    with pytest.raises(ValueError, match="github"):
        render_job_list(jobfile, "nope")


def expected_edges(jobfile) -> set[tuple[str, str]]:
    return {(need, job.name) for job in jobfile.jobs.values() for need in job.needs}


def test_dot_output_has_every_node_and_edge(jobfile):
    text = render_graph(jobfile, "dot")
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    quoted = r'"((?:[^"\\]|\\.)*)"'
    edges = set(re.findall(rf"^\s*{quoted}\s*->\s*{quoted}\s*;?\s*$", text, re.M))
    nodes = set(re.findall(rf"^\s*{quoted}\s*;\s*$", text, re.M))
    assert edges == expected_edges(jobfile)
    assert nodes == set(jobfile.jobs)


def test_dot_escapes_quotes_and_backslashes():
    job = Job('odd[K=a"b\\]', "x", needs=("lint",))
    text = render_graph(JobFile("f.yml", {"lint": Job("lint", "x"), job.name: job}), "dot")
    assert '"lint" -> "odd[K=a\\"b\\\\]";' in text


def test_mermaid_has_a_line_per_edge_with_safe_ids(jobfile):
    lines = render_graph(jobfile, "mermaid").splitlines()
    assert lines[0] in ("graph TD", "flowchart TD")
    labels = dict(re.findall(r'^\s*(n\d+)\["([^"]*)"\]$', "\n".join(lines), re.M))
    assert sorted(labels.values()) == sorted(jobfile.jobs)
    edge_lines = [line for line in lines if "-->" in line]
    ends = [re.fullmatch(r"\s*(n\d+) --> (n\d+)", line).groups() for line in edge_lines]
    edges = {(labels[need], labels[job]) for need, job in ends}
    assert len(edge_lines) == len(expected_edges(jobfile))
    assert edges == expected_edges(jobfile)


def test_mermaid_labels_escape_quotes():
    job = Job('odd[K="x"#<y>]', "x")
    text = render_graph(JobFile("f.yml", {job.name: job}), "mermaid")
    assert 'n0["odd[K=#quot;x#quot;#35;#lt;y#gt;]"]' in text


def test_unknown_graph_format():
    with pytest.raises(ValueError, match="dot, mermaid"):
        render_graph(JobFile("f.yml", {}), "svg")


def test_the_table_names_the_host_when_a_cluster_ran_jobs():
    results = [
        JobResult("remote", Status.OK, exit_code=0, attempts=1, start=0.0, end=1.0, host="node-1"),
        JobResult("skipped", Status.SKIPPED, reason="needs x (failed)"),
    ]
    lines = render_table(RunSummary(results, elapsed=1.0)).splitlines()
    assert lines[0].split() == ["job", "status", "exit", "attempts", "duration", "host", "last", "output"]
    assert lines[2].split() == ["remote", "ok", "0", "1", "1.0s", "node-1"]
    assert lines[3].split() == ["skipped", "skipped", "0", "needs", "x", "(failed)"]
    assert "host" not in render_table(RunSummary(results[1:], elapsed=1.0))
