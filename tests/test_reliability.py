"""Issue 3: hostile, wedged and huge jobs, interrupted runs; all through the real CLI."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import alive, child, parents, start_cli, wait_for

ORCH = [sys.executable, "-m", "orchestrator"]


def statuses(report_path) -> dict:
    return {job["name"]: job["status"] for job in json.loads(report_path.read_text())["jobs"]}


# -- processes that try to escape --


@pytest.mark.parametrize("how", ["double-fork", "nohup"])
def test_a_daemon_started_by_a_job_does_not_outlive_the_run(tmp_path, write_jobs, how):
    pidfile = tmp_path / "daemon.pid"
    if how == "double-fork":
        command = child("daemon", 120, pidfile, "print", "started")
    else:
        command = (
            f"nohup {child('ignore-term', 'pidfile', pidfile, 'sleep', 120)} >/dev/null 2>&1 & "
            f"while [ ! -s {pidfile} ]; do sleep 0.05; done"
        )
    jobs = write_jobs(f"jobs:\n  spawner: {{run: {json.dumps(command)}}}\n  other: {{run: sleep 0.5}}\n")
    process = start_cli("run", jobs, "--kill-grace", "0.5s")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, out + err
    assert wait_for(pidfile.exists, 5)
    pid = int(pidfile.read_text())
    assert wait_for(lambda: not alive(pid), 10), f"daemon {pid} survived the run"


@pytest.mark.parametrize("stopper", ["timeout", "fail-fast", "run-timeout", "interrupt"])
def test_a_job_ignoring_sigterm_is_killed_after_the_grace(tmp_path, write_jobs, stopper):
    pidfile = tmp_path / "stubborn.pid"
    stubborn = json.dumps(f"trap '' TERM; {child('ignore-term', 'pidfile', pidfile, 'sleep', 120)}")
    extra = {"timeout": ", timeout: 500ms", "fail-fast": "", "run-timeout": "", "interrupt": ""}[stopper]
    jobs = write_jobs(
        f"jobs:\n  stubborn: {{run: {stubborn}{extra}}}\n  bad: {{run: 'sleep 0.5; exit 1'}}\n"
        if stopper == "fail-fast"
        else f"jobs:\n  stubborn: {{run: {stubborn}{extra}}}\n"
    )
    report = tmp_path / "report.json"
    args = ["run", jobs, "--kill-grace", "0.5s", "--report-file", report]
    args += {"fail-fast": ["--fail-fast"], "run-timeout": ["--timeout", "1s"]}.get(stopper, [])
    started = time.monotonic()
    process = start_cli(*args)
    assert wait_for(pidfile.exists, 20)
    if stopper == "interrupt":
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert (
        process.returncode == {"timeout": 1, "fail-fast": 1, "run-timeout": 124, "interrupt": 130}[stopper]
    ), out + err
    jobs_out = {job["name"]: job for job in json.loads(report.read_text())["jobs"]}
    # The SIGKILL after the grace ended it, and it was waited for (not only killed later).
    assert jobs_out["stubborn"]["status"] == ("timeout" if stopper == "timeout" else "interrupted")
    assert jobs_out["stubborn"]["signal"] == "SIGKILL" and jobs_out["stubborn"]["exit_code"] is None
    assert wait_for(lambda: not alive(int(pidfile.read_text())), 5)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_stops_the_run_reports_and_exits_with_its_code(tmp_path, write_jobs, signum, code):
    marker = tmp_path / "started"
    jobs = write_jobs(f"""jobs:
  long: {{run: {json.dumps(child("pidfile", marker, "sleep", 120))}}}
  after: {{run: echo never, needs: [long]}}
  queued: {{run: sleep 120}}
""")
    report = tmp_path / "report.json"
    process = start_cli("run", jobs, "-j", "1", "--report-file", report)
    assert wait_for(marker.exists, 20)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code, out + err
    assert statuses(report) == {"long": "interrupted", "after": "skipped", "queued": "cancelled"}
    assert "interrupted" in out and "Traceback" not in err
    assert wait_for(lambda: not alive(int(marker.read_text())), 5)


def test_a_second_ctrl_c_kills_at_once(tmp_path, write_jobs):
    marker = tmp_path / "started"
    stubborn = json.dumps(f"trap '' TERM; {child('ignore-term', 'pidfile', marker, 'sleep', 120)}")
    jobs = write_jobs(f"jobs:\n  stubborn: {{run: {stubborn}}}\n")
    process = start_cli("run", jobs, "--kill-grace", "120s")
    assert wait_for(marker.exists, 20)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert process.poll() is None  # still inside the 120 s grace
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert process.returncode == 130, out + err
    assert wait_for(lambda: not alive(int(marker.read_text())), 5)


def _children_of(pid: int) -> int:
    return sum(1 for parent in parents().values() if parent == pid)


def test_no_zombies_pile_up_a_run_never_holds_more_than_j_children(tmp_path, write_jobs):
    # 500 jobs: hundreds of samples, each a chance to catch a fifth child; 2000 took 4x longer
    # and only sampled the same loop more.
    jobs = write_jobs("jobs:\n" + "".join(f"  j{i}: {{run: 'true'}}\n" for i in range(500)))
    process = start_cli("run", jobs, "-j", "4", "-o", "none", "--report", "none")
    most = 0
    samples = 0
    while process.poll() is None:
        most = max(most, _children_of(process.pid))
        samples += 1
    process.communicate(timeout=60)
    assert process.returncode == 0
    assert samples > 10, samples
    # A slot is freed only once its job was reaped, so zombies never add to the -j jobs.
    assert most <= 4, most


def test_running_out_of_file_descriptors_fails_jobs_with_a_reason(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n" + "".join(f"  j{i}: {{run: sleep 0.3}}\n" for i in range(200)))
    report = tmp_path / "report.json"
    command = " ".join([*ORCH, "run", jobs, "-j", "200", "-k", "-o", "none", "--report-file", str(report)])
    result = subprocess.run(
        ["/bin/sh", "-c", f"ulimit -n 64; exec {command}"], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    jobs_out = json.loads(report.read_text())["jobs"]
    assert {job["status"] for job in jobs_out} == {"ok", "failed"}
    log_dir = tmp_path / ".orchestrate" / "logs" / "jobs.yaml"
    for job in jobs_out:
        if job["status"] == "failed":
            # Out of descriptors at the pipe (launch) or at the log, whichever came first.
            assert job["reason"] in (
                "out of file descriptors: Too many open files",
                f"cannot open log {log_dir / job['name']}.log: Too many open files",
            ), job
            assert job["exit_code"] is None and job["attempts"] == 1
        else:
            assert job["exit_code"] == 0 and job["reason"] == ""


# -- output that tries to drown us --


def test_odd_output_is_kept_byte_for_byte(tmp_path, write_jobs):
    script = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3 + b'\\xff\\xfe no newline')"
    jobs = write_jobs(
        f"jobs:\n  odd: {{run: [{json.dumps(sys.executable)}, -c, {json.dumps(script)}]}}\n"
        f"  odd-fail: {{run: [{json.dumps(sys.executable)}, -c, {json.dumps(script + '; sys.exit(1)')}]}}\n"
    )
    result = subprocess.run([*ORCH, "run", jobs, "-k"], capture_output=True, timeout=60)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    log = tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "odd.log"
    assert log.read_bytes() == bytes(range(256)) * 3 + b"\xff\xfe no newline"
    assert log.read_bytes() in result.stdout  # grouped output passes the bytes through
    assert b"odd-fail  failed" in result.stdout


@pytest.mark.slow
def test_one_100_megabyte_line_is_kept_whole(tmp_path, write_jobs):
    size = 100 * 1024 * 1024
    jobs = write_jobs(f"jobs:\n  line: {{run: 'head -c {size} /dev/zero | tr \"\\\\0\" x; exit 1'}}\n")
    process = start_cli("run", jobs, "-o", "none")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in err
    assert os.path.getsize(tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "line.log") == size
    assert max(len(line) for line in out.splitlines()) < 400  # the table shows a trimmed tail


@pytest.mark.slow
def test_a_gigabyte_of_output_lands_whole_with_bounded_memory(tmp_path, write_jobs):
    size = 1 << 30
    jobs = write_jobs(f"jobs:\n  flood: {{run: 'head -c {size} /dev/zero'}}\n")
    measure = (
        "import resource, subprocess, sys; "
        "r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, *ORCH, "run", jobs, "-o", "none", "--report", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    peak_kib = int(result.stdout.split()[-1])
    assert os.path.getsize(tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "flood.log") == size
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"


def test_a_failing_log_write_fails_that_job_and_the_run_goes_on(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  big: {run: 'head -c 2000000 /dev/zero'}\n  small: {run: 'echo fine'}\n")
    report = tmp_path / "report.json"
    command = " ".join([*ORCH, "run", jobs, "-k", "--report-file", str(report)])
    # RLIMIT_FSIZE makes writes past 1 MB fail with EFBIG, as a full disk fails them.
    result = subprocess.run(
        ["/bin/sh", "-c", f"ulimit -f 1024; exec {command}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    jobs_out = {job["name"]: job for job in json.loads(report.read_text())["jobs"]}
    assert jobs_out["big"]["status"] == "failed" and "writing the log failed" in jobs_out["big"]["reason"]
    assert jobs_out["small"]["status"] == "ok"
    assert "writing the log failed" in result.stdout


def test_a_reader_that_stops_reading_stdout_never_stalls_the_run(tmp_path, write_jobs):
    # A pipe nobody drains (or a terminal stopped with Ctrl-S): the output waits for its
    # reader, but jobs are still timed, killed and reaped.
    pidfile = tmp_path / "sleeper.pid"
    jobs = write_jobs(f"""jobs:
  chatty: {{run: {json.dumps(child("bytes", 300_000))}}}
  sleeper:
    run: {json.dumps(child("sleep", 0.5, "pidfile", pidfile, "sleep", 120))}
    timeout: 1s
""")
    report = tmp_path / "report.json"
    # Its stdout is a pipe this test does not read yet.
    process = start_cli("run", jobs, "-k", "--report-file", report)
    try:
        assert wait_for(pidfile.exists, 20)
        sleeper = int(pidfile.read_text())
        assert wait_for(lambda: not alive(sleeper), 20), "the timeout never fired while stdout was full"
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1
    assert statuses(report) == {"chatty": "ok", "sleeper": "timeout"}
    # 300,000 bytes: 292 lines of 1,024 and 992 bytes with no newline, printed whole.
    line = "x" * 1023 + "\n"
    assert out.count("--- chatty (ok) ---\n" + line * 292 + "x" * 992 + "\n") == 1
    assert out.count(line) == 292


# -- runs that are cut short --


def _resume_file(write_jobs, tmp_path, first_command="echo first"):
    gate = tmp_path / "fixed"
    return write_jobs(f"""jobs:
  first: {{run: {json.dumps(first_command)}}}
  flaky: {{run: "test -e {gate}", needs: [first]}}
  after: {{run: echo after, needs: [flaky]}}
  side: {{run: echo side}}
"""), gate


def test_resume_reruns_only_what_did_not_succeed(tmp_path, write_jobs):
    jobs, gate = _resume_file(write_jobs, tmp_path)
    first = subprocess.run([*ORCH, "run", jobs, "-k"], capture_output=True, text=True, timeout=60)
    assert first.returncode == 1
    gate.touch()
    report = tmp_path / "report.json"
    second = subprocess.run(
        [*ORCH, "run", jobs, "--resume", "--report-file", report], capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert statuses(report) == {"first": "ok (resumed)", "flaky": "ok", "after": "ok", "side": "ok (resumed)"}


def test_resume_chains_over_runs_and_every_run_is_on_record(tmp_path, write_jobs):
    jobs, gate = _resume_file(write_jobs, tmp_path)
    subprocess.run([*ORCH, "run", jobs, "-k"], capture_output=True, timeout=60)
    gate.touch()
    subprocess.run([*ORCH, "run", jobs, "--resume"], capture_output=True, timeout=60)
    report = tmp_path / "report.json"
    third = subprocess.run(
        [*ORCH, "run", jobs, "--resume", "--report-file", report], capture_output=True, text=True, timeout=60
    )
    assert third.returncode == 0, third.stdout + third.stderr
    assert set(statuses(report).values()) == {"ok (resumed)"}
    with sqlite3.connect(tmp_path / ".orchestrate" / "state.db") as db:
        runs = db.execute("SELECT id FROM runs ORDER BY start").fetchall()
        assert len(runs) == 3
        assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 12


def test_resume_reruns_a_done_job_that_changed(tmp_path, write_jobs):
    jobs, gate = _resume_file(write_jobs, tmp_path)
    subprocess.run([*ORCH, "run", jobs, "-k"], capture_output=True, timeout=60)
    _resume_file(write_jobs, tmp_path, first_command="echo changed")
    gate.touch()
    report = tmp_path / "report.json"
    result = subprocess.run(
        [*ORCH, "run", jobs, "--resume", "--report-file", report], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert statuses(report) == {"first": "ok", "flaky": "ok", "after": "ok", "side": "ok (resumed)"}


def test_a_run_killed_with_sigkill_leaves_a_record_resume_can_use(tmp_path, write_jobs):
    marker = tmp_path / "marker"
    jobs = write_jobs(f"""jobs:
  quick: {{run: echo quick}}
  slow: {{run: {json.dumps(child("pidfile", marker, "sleep", 120))}, needs: [quick]}}
""")
    process = start_cli("run", jobs)
    assert wait_for(marker.exists, 20)
    process.kill()
    process.communicate(timeout=30)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # SIGKILL leaves no chance to clean up
    with sqlite3.connect(tmp_path / ".orchestrate" / "state.db") as db:
        assert db.execute("SELECT name, status FROM results").fetchall() == [("quick", "ok")]
    report = tmp_path / "report.json"
    marker.unlink()
    resumed = subprocess.run(
        [*ORCH, "run", jobs, "--resume", "--report-file", report, "--timeout", "1s"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert statuses(report) == {"quick": "ok (resumed)", "slow": "interrupted"}
    assert resumed.returncode == 124


def test_a_daemon_is_killed_when_its_job_ends_while_the_run_goes_on(tmp_path, write_jobs):
    pidfile = tmp_path / "daemon.pid"
    # Says "gone" only for a daemon pid it read, once no process has that pid (10 s at most).
    gone = (
        f'pid=$(cat {pidfile}) && [ -n "$pid" ] || exit 3; '
        'for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || { echo gone; exit 0; }; sleep 0.1; done; '
        "exit 1"
    )
    jobs = write_jobs(f"""jobs:
  spawner: {{run: {json.dumps(child("daemon", 120, pidfile))}}}
  checker: {{run: {json.dumps(gone)}, needs: [spawner]}}
""")
    report = tmp_path / "report.json"
    result = subprocess.run(
        [*ORCH, "run", jobs, "--kill-grace", "0.5s", "--report-file", report],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(report) == {"spawner": "ok", "checker": "ok"}
    assert (tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "checker.log").read_text() == "gone\n"
