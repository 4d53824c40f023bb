"""End-to-end: each folder in tests/scenarios holds a job file and what running it must give.

Each scenario runs once under `--processes 1` and, unless it is DECIDED_IN_THE_PARENT, once
under `--processes 2`; both runs are checked against the folder's expect.yaml and against the
same golden files in its golden/ folder (see tests/scenarios/README.md; refresh them with
`make golden`).

expect.yaml keys: args (extra `run` arguments), exit, statuses / exit_codes / signals /
attempts (per job, from the JSON report), stdout (substrings), absent (substrings that
must not appear), stdout_exact, setup_dirs (folders to create first), max_seconds.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from golden import normalise_json, normalise_junit, normalise_stdout, replace_known

SCENARIOS = os.path.join(os.path.dirname(__file__), "scenarios")
# Run as on a developer's machine even under CI: CI=1 adds progress lines, GitHub Actions
# ::group:: markers, and the golden files hold the plain output.
PLAIN_ENVIRONMENT = {"CI": "", "GITHUB_ACTIONS": ""}


def scenario_names():
    return sorted(name for name in os.listdir(SCENARIOS) if os.path.isdir(os.path.join(SCENARIOS, name)))


# Scenarios whose difference from the others is decided in the parent alone: which jobs are
# selected, what the engine does after an exit code, how the loader expands a matrix. Under
# --processes 2 they would repeat what the other scenarios already send through the workers
# (commands that exit, print, see their environment, run at once, are stopped), so they run
# under --processes 1 only. What the parent prints stays checked under both (output-failed,
# quiet-success: a worker printing to the shared terminal would break them).
DECIDED_IN_THE_PARENT = frozenset(
    ("select-tags", "select-targets", "allowed-failure", "keep-going", "dag-ok", "matrix")
)


def scenario_runs() -> list:
    return [
        pytest.param(name, processes, id=f"{name}-{processes}")
        for name in scenario_names()
        for processes in ("1", "2")
        if processes == "1" or name not in DECIDED_IN_THE_PARENT
    ]


@pytest.mark.parametrize("name, processes", scenario_runs())
def test_scenario(name, processes, tmp_path, golden):
    folder = tmp_path / name
    shutil.copytree(os.path.join(SCENARIOS, name), folder, ignore=shutil.ignore_patterns("golden"))
    expect = yaml.safe_load((folder / "expect.yaml").read_text())
    for directory in expect.get("setup_dirs", []):
        (folder / directory).mkdir()
    report = tmp_path / "report.json"
    junit = tmp_path / "junit.xml"
    started = time.monotonic()
    result = run_cli(
        "run",
        folder / "jobs.yaml",
        "--report-file",
        report,
        "--report-file",
        junit,
        "--processes",
        processes,
        *expect.get("args", []),
        env=PLAIN_ENVIRONMENT,
    )
    elapsed = time.monotonic() - started
    context = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == expect["exit"], context
    assert "Traceback" not in result.stderr, context
    run_report = json.loads(report.read_text())
    jobs = {job["name"]: job for job in run_report["jobs"]}
    for key, field in (
        ("statuses", "status"),
        ("exit_codes", "exit_code"),
        ("signals", "signal"),
        ("attempts", "attempts"),
    ):
        for job, value in expect.get(key, {}).items():
            assert jobs[job][field] == value, f"{job} {field}: {jobs[job][field]!r}\n{context}"
    if "statuses" in expect:
        assert set(jobs) == set(expect["statuses"]), context
    for text in expect.get("stdout", []):
        assert text in result.stdout, f"{text!r} missing\n{context}"
    for text in expect.get("absent", []):
        assert text not in result.stdout, f"{text!r} present\n{context}"
    if "stdout_exact" in expect:
        assert result.stdout == expect["stdout_exact"], context
    assert elapsed < expect.get("max_seconds", 60)
    goldens = os.path.join(SCENARIOS, name, "golden")
    run_id = run_report["run_id"]
    golden.check(Path(goldens, "stdout.txt"), normalise_stdout(result.stdout, str(folder), run_id))
    golden.check(Path(goldens, "stderr.txt"), replace_known(result.stderr, str(folder), run_id))
    golden.check(Path(goldens, "report.json"), normalise_json(report.read_text(), str(folder)))
    golden.check(Path(goldens, "junit.xml"), normalise_junit(junit.read_text(), str(folder), run_id))
