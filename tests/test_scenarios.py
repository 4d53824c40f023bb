"""End-to-end: each folder in tests/scenarios holds a job file and what running it must give.

expect.yaml keys: args (extra `run` arguments), exit, statuses / exit_codes / signals /
attempts (per job, from the JSON report), stdout (substrings), absent (substrings that
must not appear), stdout_exact, setup_dirs (folders to create first), max_seconds.
"""

import json
import os
import shutil
import time

import pytest
import yaml
from conftest import run_cli

SCENARIOS = os.path.join(os.path.dirname(__file__), "scenarios")


def scenario_names():
    return sorted(name for name in os.listdir(SCENARIOS) if os.path.isdir(os.path.join(SCENARIOS, name)))


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("name", scenario_names())
def test_scenario(name, processes, tmp_path):
    folder = tmp_path / name
    shutil.copytree(os.path.join(SCENARIOS, name), folder)
    expect = yaml.safe_load((folder / "expect.yaml").read_text())
    for directory in expect.get("setup_dirs", []):
        (folder / directory).mkdir()
    report = tmp_path / "report.json"
    started = time.monotonic()
    result = run_cli(
        "run",
        folder / "jobs.yaml",
        "--report-file",
        report,
        "--processes",
        processes,
        *expect.get("args", []),
    )
    elapsed = time.monotonic() - started
    context = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == expect["exit"], context
    assert "Traceback" not in result.stderr, context
    jobs = {job["name"]: job for job in json.loads(report.read_text())["jobs"]}
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
