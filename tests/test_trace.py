"""The critical path, the timing fields of the JSON report, and the Chrome trace (--trace)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from itertools import pairwise

import pytest
from conftest import run_cli
from runs import T0, attempt, big_run, job, pipeline

from orchestrator.report import json_report, render_table, write_report_file
from orchestrator.results import JobResult, RunSummary, Status
from orchestrator.timeline import critical_path, critical_path_line
from orchestrator.trace import SLOTS_PID, TID_OFFSET, WAITING_PID, trace_events, write_trace_file


def names(path: list[JobResult]) -> list[str]:
    return [result.name for result in path]


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the critical path ----------------------------------------------------------------------


def test_critical_path_is_the_chain_that_ended_last():
    summary, needs = pipeline()
    assert names(critical_path(summary.results, needs)) == ["gen", "build", "test"]


def test_critical_path_steps_to_the_need_that_ended_last():
    results = [
        job("quick", attempt(1, 0, 1, slot=0), ready=0),
        job("slow", attempt(1, 0, 4, slot=1), ready=0),
        job("join", attempt(1, 4, 5, slot=0), ready=4),
    ]
    needs = {"join": ("quick", "slow")}
    assert names(critical_path(results, needs)) == ["slow", "join"]


def test_critical_path_stops_where_no_need_ran():
    results = [
        JobResult("cached", Status.RESUMED),
        job("build", attempt(1, 0, 3, slot=0), ready=0),
    ]
    assert names(critical_path(results, {"build": ("cached",)})) == ["build"]


def test_critical_path_without_needs_is_the_job_that_ended_last():
    summary, _ = pipeline()
    assert names(critical_path(summary.results, {})) == ["test"]


def test_critical_path_of_a_run_where_nothing_ran_is_empty():
    results = [JobResult("a", Status.SKIPPED), JobResult("b", Status.CANCELLED)]
    assert critical_path(results, {"b": ("a",)}) == []


def test_critical_path_uses_the_start_when_ready_is_unknown():
    results = [
        job("a", attempt(1, 0, 1, slot=0)),
        job("b", attempt(1, 1, 2, slot=0)),
    ]
    assert names(critical_path(results, {"b": ("a",)})) == ["a", "b"]


def test_a_need_that_ended_after_the_job_was_ready_did_not_hold_it_up():
    # "late" ended at 5, yet "job" was ready at 2: it cannot have waited for it.
    results = [
        job("early", attempt(1, 0, 2, slot=0), ready=0),
        job("late", attempt(1, 0, 5, slot=1), ready=0),
        job("job", attempt(1, 2, 6, slot=0), ready=2),
    ]
    assert names(critical_path(results, {"job": ("early", "late")})) == ["early", "job"]


def test_the_table_names_the_critical_path_under_the_summary_line():
    summary, needs = pipeline()
    lines = render_table(summary, needs=needs).splitlines()
    assert lines[-2] == summary.summary_line()
    # gen 2s + build 5s + test 7..10s = 10.0s of the 10.5s the run took
    assert lines[-1] == "critical path: gen -> build -> test (10.0s of 10.5s)"


def test_no_critical_path_line_when_no_job_needs_another():
    summary, _ = pipeline()
    assert critical_path_line(summary, {name: () for name in ("gen", "build")}) is None
    assert "critical path" not in render_table(summary, needs={})


def test_json_report_has_the_critical_path_and_each_jobs_timing():
    summary, needs = pipeline()
    report = json_report(summary, {}, needs)
    assert report["critical_path"] == ["gen", "build", "test"]
    assert report["critical_path_seconds"] == 10.0
    jobs = {entry["name"]: entry for entry in report["jobs"]}
    assert jobs["docs"]["ready"] == "2023-11-14T22:13:22.000Z" and jobs["docs"]["slot"] == 1
    assert jobs["test"]["slot"] == 0 and jobs["test"]["host"] is None
    assert [(t["attempt"], t["slot"], t["exit_code"], t["duration"]) for t in jobs["test"]["tries"]] == [
        (1, 1, 1, 1.0),
        (2, 0, 0, 1.5),
    ]


# -- the trace ------------------------------------------------------------------------------


def x_events(trace: dict, pid: int = SLOTS_PID) -> list[dict]:
    return [event for event in trace["traceEvents"] if event["ph"] == "X" and event["pid"] == pid]


def assert_lanes_never_overlap(trace: dict) -> None:
    lanes = defaultdict(list)
    for event in trace["traceEvents"]:
        if event["ph"] == "X":
            lanes[event["pid"], event["tid"]].append((event["ts"], event["ts"] + event["dur"], event["name"]))
    for lane, spans in lanes.items():
        spans.sort()
        for (_, end, first), (start, _, second) in pairwise(spans):
            assert start >= end, f"{first} and {second} overlap in lane {lane}"


def assert_trace_matches_report(trace: dict, report: dict) -> None:
    """Every attempt of the JSON report is one X event in its slot's lane, the same length
    within a millisecond, starting when the report says."""
    events = defaultdict(list)
    for event in x_events(trace):
        events[event["name"], event["args"]["attempt"]].append(event)
    tries = [(entry, one) for entry in report["jobs"] for one in entry["tries"]]
    assert len(x_events(trace)) == len(tries)
    origin = epoch(trace["otherData"]["started"])
    for entry, one in tries:
        [event] = events[entry["name"], one["attempt"]]
        assert abs(event["dur"] / 1e6 - one["duration"]) <= 0.001
        assert abs(origin + event["ts"] / 1e6 - epoch(one["start"])) <= 0.001
        assert event["args"]["exit_code"] == one["exit_code"]
        if one["slot"] is not None:
            assert event["tid"] == one["slot"] + TID_OFFSET and event["args"]["slot"] == one["slot"]


def test_trace_is_a_trace_event_object_with_named_lanes(tmp_path):
    summary, needs = pipeline()
    path = tmp_path / "trace.json"
    write_trace_file(str(path), summary, {"run_id": "r-1"}, needs)
    trace = json.loads(path.read_text("ascii"))
    assert isinstance(trace, dict) and isinstance(trace["traceEvents"], list)
    for event in trace["traceEvents"]:
        assert {"ph", "name", "pid"} <= set(event)
        if event["ph"] == "X":
            assert event["dur"] >= 0 and event["ts"] >= 0
    named = {(e["pid"], e["tid"]) for e in trace["traceEvents"] if e["name"] == "thread_name"}
    used = {(e["pid"], e["tid"]) for e in trace["traceEvents"] if e["ph"] == "X"}
    assert used <= named
    processes = {e["pid"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert {e["pid"] for e in trace["traceEvents"]} <= processes


def test_trace_has_one_event_per_attempt_with_its_outcome():
    summary, needs = pipeline()
    trace = trace_events(summary, {}, needs)
    test_attempts = sorted((e for e in x_events(trace) if e["name"] == "test"), key=lambda e: e["ts"])
    assert [(e["args"]["attempt"], e["args"]["status"], e["args"]["exit_code"]) for e in test_attempts] == [
        (1, "retried", 1),
        (2, "ok", 0),
    ]
    assert [e["tid"] - TID_OFFSET for e in test_attempts] == [1, 0]
    assert test_attempts[0]["ts"] == 7_000_000 and test_attempts[0]["dur"] == 1_000_000
    assert_trace_matches_report(trace, json_report(summary, {}, needs))


def test_trace_shows_the_wait_for_a_slot():
    summary, needs = pipeline()
    trace = trace_events(summary, {}, needs)
    waits = x_events(trace, WAITING_PID)
    assert [(e["name"], e["ts"], e["dur"]) for e in waits] == [("docs", 2_000_000, 1_000_000)]
    counter = [(e["ts"], e["args"]["jobs"]) for e in trace["traceEvents"] if e["ph"] == "C"]
    assert counter == [(2_000_000, 1), (3_000_000, 0)]


def test_trace_marks_the_critical_path():
    summary, needs = pipeline()
    trace = trace_events(summary, {}, needs)
    marked = {e["name"] for e in x_events(trace) if e["args"].get("critical_path")}
    assert marked == {"gen", "build", "test"}
    assert trace["otherData"]["critical_path"] == ["gen", "build", "test"]


def test_trace_of_two_thousand_jobs_agrees_with_the_json_report(tmp_path):
    summary, needs = big_run(2000)
    write_trace_file(str(tmp_path / "t.json"), summary, {}, needs)
    write_report_file(str(tmp_path / "r.json"), summary, {}, needs)
    trace = json.loads((tmp_path / "t.json").read_text())
    report = json.loads((tmp_path / "r.json").read_text())
    assert_lanes_never_overlap(trace)
    assert_trace_matches_report(trace, report)
    assert len(x_events(trace)) > 2000  # some jobs retried
    assert x_events(trace, WAITING_PID), "some jobs waited for a slot"


def test_attempts_without_a_slot_get_lanes_that_never_overlap():
    results = [
        JobResult("a", Status.OK, 0, attempts=1, start=T0, end=T0 + 2),
        JobResult("b", Status.OK, 0, attempts=1, start=T0 + 1, end=T0 + 3),
        JobResult("c", Status.OK, 0, attempts=1, start=T0 + 2, end=T0 + 4),
    ]
    trace = trace_events(RunSummary(results, elapsed=4.0), {})
    assert_lanes_never_overlap(trace)
    assert len({e["tid"] for e in x_events(trace)}) == 2


def test_trace_of_names_that_are_not_text_is_still_strict_json(tmp_path):
    bad = "build[X=\udcff<script>]"
    results = [job(bad, attempt(1, 0, 1, slot=0), ready=0)]
    path = tmp_path / "t.json"
    write_trace_file(str(path), RunSummary(results, elapsed=1.0), {}, {bad: ()})
    trace = json.loads(path.read_bytes().decode("utf-8", "strict"))
    assert x_events(trace)[0]["name"] == "build[X=\ufffd<script>]"


# -- through the command line ---------------------------------------------------------------

JOBS = """\
jobs:
  gen: {run: "sleep 0.3"}
  lint: {run: "sleep 0.2"}
  build: {run: "sleep 0.4", needs: [gen]}
  test:
    run: 'sleep 0.1; test "$ORCHESTRATE_ATTEMPT" -ge 2'
    needs: [build]
    retries: 1
  docs: {run: "sleep 0.1", needs: [gen]}
"""


@pytest.fixture(scope="module")
def run_with_trace(tmp_path_factory) -> tuple[dict, dict, str]:
    """One run of JOBS with --trace and a JSON report, read by the tests below."""
    folder = tmp_path_factory.mktemp("traced")
    jobs = folder / "jobs.yaml"
    jobs.write_text(JOBS)
    trace, report = folder / "trace.json", folder / "report.json"
    result = run_cli("run", jobs, "-j", "2", "--trace", trace, "--report-file", report)
    assert result.returncode == 0, result.stderr
    return json.loads(trace.read_text()), json.loads(report.read_text()), result.stdout


def test_run_writes_a_trace_that_agrees_with_the_json_report(run_with_trace):
    trace, report, stdout = run_with_trace
    assert_lanes_never_overlap(trace)
    assert_trace_matches_report(trace, report)
    assert report["critical_path"] == ["gen", "build", "test"]
    assert report["critical_path_seconds"] >= 0.8
    assert "critical path: gen -> build -> test (" in stdout


def test_run_trace_lanes_are_the_slots_and_every_retry_is_an_event(run_with_trace):
    trace, report, _ = run_with_trace
    jobs = {entry["name"]: entry for entry in report["jobs"]}
    assert [one["exit_code"] for one in jobs["test"]["tries"]] == [1, 0]
    assert all(entry["slot"] in (0, 1) and entry["ready"] for entry in report["jobs"])
    assert {e["tid"] - TID_OFFSET for e in x_events(trace)} == {0, 1}
