"""Issue 16: timeouts under each policy, retries, retry delays, the first stop reason and
launch failures, through the real CLI: each test here failed with a one-line bug planted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import child

ORCH = [sys.executable, "-m", "orchestrator"]


def run_jobs(tmp_path, jobs_yaml: str, *args) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a job file through the CLI; return the process and the JSON report's jobs by name."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(jobs_yaml)
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        [*ORCH, "run", jobs, "--report-file", report, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result, {job["name"]: job for job in json.loads(report.read_text())["jobs"]}


def statuses(jobs: dict) -> dict[str, str]:
    return {name: job["status"] for name, job in jobs.items()}


def log_of(tmp_path, name: str) -> str:
    return (tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / f"{name}.log").read_text()


# -- a job timeout is a failure for the policies --


def test_a_job_timeout_halts_the_run_under_the_default_policy(tmp_path):
    result, jobs = run_jobs(
        tmp_path,
        f"""jobs:
  slow: {{run: {json.dumps(child("sleep", 30))}, timeout: 300ms}}
  later: {{run: echo later}}
""",
        "-j",
        1,
        "--kill-grace",
        "1s",
    )
    assert statuses(jobs) == {"slow": "timeout", "later": "cancelled"}
    assert result.returncode == 1, result.stdout + result.stderr


def test_a_job_timeout_stops_the_run_under_fail_fast(tmp_path):
    result, jobs = run_jobs(
        tmp_path,
        f"""jobs:
  slow: {{run: {json.dumps(child("sleep", 30))}, timeout: 300ms}}
  long: {{run: {json.dumps(child("sleep", 10))}}}
  queued: {{run: echo queued}}
""",
        "-j",
        2,
        "--fail-fast",
        "--kill-grace",
        "1s",
    )
    assert statuses(jobs) == {"slow": "timeout", "long": "interrupted", "queued": "cancelled"}
    assert jobs["long"]["signal"] == "SIGTERM"
    assert result.returncode == 1, result.stdout + result.stderr


# -- retries --


def test_a_timed_out_attempt_is_retried(tmp_path):
    script = 'if [ "$ORCHESTRATE_ATTEMPT" = 1 ]; then sleep 30; fi; echo attempt $ORCHESTRATE_ATTEMPT'
    result, jobs = run_jobs(
        tmp_path,
        f"jobs:\n  flaky: {{run: {json.dumps(script)}, timeout: 500ms, retries: 1}}\n",
        "--kill-grace",
        "1s",
    )
    assert statuses(jobs) == {"flaky": "ok"}
    assert jobs["flaky"]["attempts"] == 2
    assert log_of(tmp_path, "flaky") == "--- attempt 2 ---\nattempt 2\n"
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_retry_starts_after_the_run_was_stopped(tmp_path):
    result, jobs = run_jobs(
        tmp_path,
        f"jobs:\n  stopped: {{run: {json.dumps(child('print', 'attempt', 'sleep', 30))}, retries: 3}}\n",
        "--timeout",
        "1s",
        "--kill-grace",
        "1s",
    )
    assert statuses(jobs) == {"stopped": "interrupted"}
    assert jobs["stopped"]["attempts"] == 1
    assert log_of(tmp_path, "stopped") == "attempt\n"  # no "--- attempt 2 ---"
    assert result.returncode == 124, result.stdout + result.stderr


def test_retry_delay_separates_the_attempts(tmp_path):
    record = tmp_path / "record"
    result, jobs = run_jobs(
        tmp_path,
        f"""jobs:
  flaky: {{run: {json.dumps(child("record", record) + "; exit 1")}, retries: 1, retry_delay: 1s}}
""",
    )
    assert statuses(jobs) == {"flaky": "failed"} and jobs["flaky"]["attempts"] == 2
    events = [line.split() for line in record.read_text().splitlines()]
    assert [(event, name) for event, name, _ in events] == [("start", "flaky"), ("end", "flaky")] * 2
    first_end, second_start = float(events[1][2]), float(events[2][2])
    assert second_start - first_end >= 0.9  # the 1 s delay, less timer slack
    assert result.returncode == 1


def test_a_timed_out_job_allowed_to_fail_is_allowed_and_its_dependents_run(tmp_path):
    result, jobs = run_jobs(
        tmp_path,
        f"""jobs:
  flaky: {{run: {json.dumps(child("sleep", 30))}, timeout: 300ms, allow_failure: true}}
  next: {{run: echo next, needs: [flaky]}}
""",
        "--kill-grace",
        "1s",
    )
    assert statuses(jobs) == {"flaky": "allowed", "next": "ok"}
    assert result.returncode == 0, result.stdout + result.stderr


# -- the first stop reason decides the exit code --

# Marks its start, marks each SIGTERM and survives it, so the run stays stopping until the
# SIGKILL after the grace: long enough for a second stop reason to arrive.
HOLDS_ON = "trap 'touch {termed}' TERM; touch {started}; while :; do sleep 0.1; done"


def _start_holding_on(tmp_path, *args) -> tuple[subprocess.Popen, os.PathLike, os.PathLike]:
    started, termed = tmp_path / "started", tmp_path / "termed"
    jobs = tmp_path / "jobs.yaml"
    command = HOLDS_ON.format(started=started, termed=termed)
    jobs.write_text(f"jobs:\n  holds_on: {{run: {json.dumps(command)}}}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    process = subprocess.Popen(
        [*ORCH, "run", jobs, "--report-file", tmp_path / "report.json", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return process, started, termed


def _wait_for(path, seconds=20.0) -> None:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_ctrl_c_after_the_run_timeout_keeps_exit_124(tmp_path):
    # The grace is what the test has to send SIGINT in: 1.5 s for a poll of 20 ms.
    process, _, termed = _start_holding_on(tmp_path, "--timeout", "1s", "--kill-grace", "1.5s")
    _wait_for(termed)  # the run timed out and is waiting out the grace
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 124, out + err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stop_reason"] == "timeout" and report["exit_code"] == 124


def test_the_run_timeout_after_ctrl_c_keeps_exit_130(tmp_path):
    # SIGINT comes at once, 1.5 s before the --timeout; the grace outlasts the timeout by 1.5 s.
    process, started, termed = _start_holding_on(tmp_path, "--timeout", "1.5s", "--kill-grace", "3s")
    _wait_for(started)
    process.send_signal(signal.SIGINT)
    _wait_for(termed)
    out, err = process.communicate(timeout=60)  # the --timeout expires during the grace
    assert process.returncode == 130, out + err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stop_reason"] == "interrupt" and report["exit_code"] == 130
    assert report["elapsed"] > 1.5  # the --timeout did expire before the run ended


# -- a command that cannot be executed: 126, as a shell says --


@pytest.mark.parametrize("cwd", [None, "."], ids=["posix_spawn", "popen"])
@pytest.mark.parametrize(
    "mode, content, why",
    [
        (0o644, "#!/bin/sh\necho hi\n", "Permission denied"),
        (0o755, "\x7fELF not really\n", "Exec format error"),
    ],
    ids=["not-executable", "not-a-program"],
)
def test_a_command_that_cannot_be_executed_exits_126(tmp_path, cwd, mode, content, why):
    tool = tmp_path / "tool"
    tool.write_text(content)
    tool.chmod(mode)
    where = "" if cwd is None else f", cwd: {cwd}"
    result, jobs = run_jobs(tmp_path, f"jobs:\n  tool: {{run: [{json.dumps(str(tool))}]{where}}}\n")
    assert statuses(jobs) == {"tool": "failed"}
    assert jobs["tool"]["exit_code"] == 126
    assert jobs["tool"]["reason"] == f"cannot execute {tool}: {why}"
    assert result.returncode == 1


# -- resources --


def test_a_job_waiting_for_the_resource_of_a_failing_job_is_cancelled(tmp_path):
    # The failing job's release granted the waiter just as the failure halted the run; the
    # run used to end in a LoopExit traceback.
    result, jobs = run_jobs(
        tmp_path,
        """resources: {r: 1}
jobs:
  bad: {run: "sleep 0.2; exit 1", resources: [r]}
  next: {run: echo next, resources: [r]}
""",
    )
    assert statuses(jobs) == {"bad": "failed", "next": "cancelled"}
    assert result.returncode == 1, result.stdout + result.stderr
