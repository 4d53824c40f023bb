"""Issue 10: the run state in .orchestrate/state.db, per-job locks, resume, history and
report; all through the real CLI."""

import json
import os
import shutil
import signal
import sqlite3
import sys

from conftest import child, run_cli, start_cli, wait_for

ORCH = [sys.executable, "-m", "orchestrator"]


def statuses(report_path) -> dict:
    return {job["name"]: job["status"] for job in json.loads(report_path.read_text())["jobs"]}


def _runs_on_record(state_db) -> int:
    if not state_db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state_db}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:  # not set up yet
        return 0


def test_four_concurrent_runs_run_a_shared_need_once(tmp_path, write_jobs):
    ran, gate = tmp_path / "ran", tmp_path / "gate"
    # Ends once all four runs are on record (started, so waiting for it or running it).
    shared = f"while [ ! -e {gate} ]; do sleep 0.05; done; echo x >> {ran}"
    jobs = write_jobs(f"""jobs:
  setup: {{run: {json.dumps(shared)}}}
  a: {{run: echo a, needs: [setup]}}
  b: {{run: echo b, needs: [setup]}}
  c: {{run: echo c, needs: [setup]}}
""")
    reports = [tmp_path / f"report{i}.json" for i in range(4)]
    selections = [["a"], ["b"], ["a", "c"], ["setup"]]
    runs = [
        start_cli("run", jobs, *selection, "--report-file", report)
        for selection, report in zip(selections, reports, strict=True)
    ]
    try:
        assert wait_for(lambda: _runs_on_record(tmp_path / ".orchestrate" / "state.db") == 4, 60)
    finally:
        gate.touch()
    for process in runs:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, out + err
        assert "Traceback" not in err
    assert ran.read_text() == "x\n"  # the shared need ran once
    setups = sorted(statuses(report)["setup"] for report in reports)
    assert setups == ["ok", "ok (shared)", "ok (shared)", "ok (shared)"]
    history = run_cli("history", "-f", jobs)
    assert history.returncode == 0, history.stderr
    lines = [line for line in history.stdout.splitlines()[2:] if line.strip()]
    assert len(lines) == 4
    assert all(line.split()[-1] == "0" for line in lines)  # four complete runs, exit 0
    with sqlite3.connect(tmp_path / ".orchestrate" / "state.db") as db:
        per_run = db.execute("SELECT run_id, count(*) FROM results GROUP BY run_id").fetchall()
    assert sorted(n for _, n in per_run) == [1, 2, 2, 3]


def test_two_job_files_in_one_folder_keep_their_own_logs(tmp_path, write_jobs):
    frontend = write_jobs(
        "jobs:\n  build: {run: echo frontend build}\n  test: {run: exit 1, needs: [build]}\n", "frontend.yaml"
    )
    backend = write_jobs("jobs:\n  build: {run: echo backend build}\n", "backend.yaml")
    assert run_cli("run", frontend).returncode == 1
    assert run_cli("run", backend).returncode == 0
    resumed = run_cli("run", frontend, "--resume", "-o", "stream")
    assert resumed.returncode == 1
    logs = tmp_path / ".orchestrate" / "logs"
    assert (logs / "frontend.yaml" / "build.log").read_text() == "frontend build\n"
    assert (logs / "backend.yaml" / "build.log").read_text() == "backend build\n"
    assert "backend" not in resumed.stdout
    table = [line.split() for line in resumed.stdout.splitlines() if line.startswith(("build", "test"))]
    assert table[0][:3] == ["build", "ok", "(resumed)"]


def test_log_names_are_readable(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  build:\n    run: echo $ARCH\n    matrix: {ARCH: [arm64, x 86]}\n")
    assert run_cli("run", jobs).returncode == 0
    logs = tmp_path / ".orchestrate" / "logs" / "jobs.yaml"
    assert sorted(os.listdir(logs)) == ["build[ARCH=arm64].log", "build[ARCH=x%2086].log"]


def _dry_listed(jobs) -> dict:
    result = run_cli("run", jobs, "--resume", "-n")
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def test_resume_dry_run_lists_exactly_what_resume_runs(tmp_path, write_jobs):
    gate = tmp_path / "fixed"
    jobs = write_jobs(f"""jobs:
  first: {{run: echo first}}
  flaky: {{run: "test -e {gate}", needs: [first]}}
  after: {{run: echo after, needs: [flaky]}}
  side: {{run: echo side}}
  other: {{run: echo other}}
""")
    assert run_cli("run", jobs, "-k", "first", "flaky", "after", "side").returncode == 1
    assert run_cli("run", jobs, "other").returncode == 0  # a subset forgets nothing about the rest
    listed = _dry_listed(jobs)
    would_run = {name for name, what in listed.items() if what != "(resumed)"}
    assert would_run == {"flaky", "after"}
    gate.touch()
    report = tmp_path / "report.json"
    assert run_cli("run", jobs, "--resume", "--report-file", report).returncode == 0
    ran = {name for name, status in statuses(report).items() if status != "ok (resumed)"}
    assert ran == would_run
    assert set(_dry_listed(jobs).values()) == {"(resumed)"}


def test_resume_reruns_a_done_job_whose_inputs_outputs_or_host_resources_changed(tmp_path, write_jobs):
    def write(**changed):
        keys = {"inputs": "[a.txt]", "outputs": "[b.txt]", "host_resources": "{gpu: 1}"} | changed
        return write_jobs(
            "jobs:\n  copy:\n    run: cp a.txt b.txt && cp a.txt c.txt\n"
            + "".join(f"    {key}: {value}\n" for key, value in keys.items())
        )

    (tmp_path / "a.txt").write_text("a\n")
    jobs = write()
    report = tmp_path / "report.json"
    assert run_cli("run", jobs).returncode == 0
    assert run_cli("run", jobs, "--resume", "--report-file", report).returncode == 0
    assert statuses(report) == {"copy": "ok (resumed)"}
    for change in (
        {"outputs": "[b.txt, c.txt]"},
        {"inputs": "[a.txt, b.txt]"},
        {"host_resources": "{gpu: 2}"},
    ):
        jobs = write(**change)
        assert run_cli("run", jobs, "--resume", "--report-file", report).returncode == 0
        assert statuses(report) == {"copy": "ok"}, change


def test_a_run_killed_with_sigkill_then_resume_runs_exactly_the_rest(tmp_path, write_jobs):
    marker = tmp_path / "marker"
    jobs = write_jobs(f"""jobs:
  one: {{run: echo one}}
  two: {{run: echo two}}
  slow: {{run: {json.dumps(child("pidfile", marker, "sleep", 120))}, needs: [one, two]}}
  last: {{run: echo last, needs: [slow]}}
""")
    process = start_cli("run", jobs)
    assert wait_for(marker.exists, 20)
    process.kill()
    process.communicate(timeout=30)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    listed = _dry_listed(jobs)
    assert listed["one"] == listed["two"] == "(resumed)"
    assert "(resumed)" not in (listed["slow"], listed["last"])
    report = tmp_path / "report.json"
    marker.unlink()
    resumed = run_cli("run", jobs, "--resume", "--report-file", report, "--timeout", "1s")
    assert resumed.returncode == 124
    assert statuses(report) == {
        "one": "ok (resumed)",
        "two": "ok (resumed)",
        "slow": "interrupted",
        "last": "skipped",
    }
    history = run_cli("history", "-f", jobs)
    assert "killed" in history.stdout  # the killed run has no end


def _history_exits(jobs) -> list[str]:
    """The exit column of `orchestrate history`, latest run first."""
    history = run_cli("history", "-f", jobs)
    assert history.returncode == 0, history.stderr
    return [line.split()[-1] for line in history.stdout.splitlines()[2:] if line.strip()]


def test_history_tells_a_run_in_progress_from_a_killed_one(tmp_path, write_jobs):
    pidfile, started, gate = tmp_path / "pid", tmp_path / "started", tmp_path / "gate"
    wait = f"touch {started}; while [ ! -e {gate} ]; do sleep 0.05; done"
    jobs = write_jobs(f"""jobs:
  stuck: {{run: {json.dumps(child("pidfile", pidfile, "sleep", 120))}}}
  gated: {{run: {json.dumps(wait)}}}
""")
    killed = start_cli("run", jobs, "stuck")
    assert wait_for(pidfile.exists, 20)
    killed.kill()  # SIGKILL: its run never records an end
    killed.communicate(timeout=30)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    live = start_cli("run", jobs, "gated")
    try:
        assert wait_for(started.exists, 20)
        assert _history_exits(jobs) == ["running", "killed"]
        # `report` says so too, and a report file has no exit code yet, not a partial one.
        live_id, killed_id = (
            line.split()[0] for line in run_cli("history", "-f", jobs).stdout.splitlines()[2:4]
        )
        data = tmp_path / "live.json"
        report = run_cli("report", "-f", jobs, "--report-file", data)
        assert report.returncode == 0, report.stderr
        assert f"run {live_id} is still running: 0 of 1 jobs finished so far" in report.stdout
        assert json.loads(data.read_text())["exit_code"] is None
        report = run_cli("report", "-f", jobs, "--run", killed_id)
        assert f"run {killed_id} was killed before it ended: 0 of 1 jobs finished" in report.stdout
    finally:
        gate.touch()
        out, err = live.communicate(timeout=30)
    assert live.returncode == 0, out + err
    assert _history_exits(jobs) == ["0", "killed"]


def test_history_and_report_of_a_past_run(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  good: {run: echo good}\n  bad: {run: echo broken; exit 3}\n")
    first = run_cli("run", jobs, "-k")
    assert first.returncode == 1
    assert run_cli("run", jobs, "good").returncode == 0
    history = run_cli("history", "-f", jobs)
    run_ids = [line.split()[0] for line in history.stdout.splitlines()[2:]]
    assert len(run_ids) == 2
    html, data = tmp_path / "old.html", tmp_path / "old.json"
    report = run_cli("report", "-f", jobs, "--run", run_ids[1], "--report-file", html, "--report-file", data)
    assert report.returncode == 0, report.stderr
    lines = first.stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("job "))) :][:4]
    assert report.stdout.splitlines()[:4] == table  # the same table: header, rule, both jobs
    saved = json.loads(data.read_text())
    assert {job["name"]: job["status"] for job in saved["jobs"]} == {"good": "ok", "bad": "failed"}
    assert saved["exit_code"] == 1
    assert "bad" in html.read_text() and "good" in html.read_text()
    latest = run_cli("report", "-f", jobs)
    assert "bad" not in latest.stdout and "good" in latest.stdout
    missing = run_cli("report", "-f", jobs, "--run", "nosuchrun")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def _warnings(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("orchestrate: warning:")]


def test_a_corrupt_or_truncated_database_is_moved_aside(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  a: {run: echo a}\n  b: {run: echo b, needs: [a]}\n")
    db = tmp_path / ".orchestrate" / "state.db"
    for damage in ("garbage", "truncate"):
        for _ in range(3):
            assert run_cli("run", jobs).returncode == 0
        if damage == "garbage":
            db.write_bytes(os.urandom(8192))
        else:
            with open(db, "r+b") as f:
                f.truncate(db.stat().st_size // 2 or 100)
        report = tmp_path / "report.json"
        result = run_cli("run", jobs, "--resume", "--report-file", report)
        assert result.returncode == 0, result.stderr
        assert set(statuses(report).values()) <= {"ok", "ok (resumed)"}
        warnings = _warnings(result.stderr)
        assert len(warnings) <= 1
        if damage == "garbage":
            assert len(warnings) == 1 and "moved aside" in warnings[0]
        # The run after it resumes from the fresh state: nothing is lost.
        again = run_cli("run", jobs, "--resume", "--report-file", report)
        assert again.returncode == 0 and not _warnings(again.stderr)
        assert set(statuses(report).values()) == {"ok (resumed)"}
    assert any(name.startswith("state.db.corrupt-") for name in os.listdir(db.parent))


def test_a_state_folder_that_cannot_be_written_gives_one_warning(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  a: {run: echo a}\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    report = tmp_path / "report.json"
    result = run_cli("run", jobs, "--state-dir", blocker / "state", "--report-file", report)
    assert result.returncode == 0
    assert len(_warnings(result.stderr)) == 1
    assert statuses(report) == {"a": "ok"}
    dry = run_cli("run", jobs, "--state-dir", blocker / "state", "--resume", "-n")
    assert dry.stdout == "a: echo a\n" and not _warnings(dry.stderr)


def test_an_unreadable_state_db_path_gives_one_warning(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  a: {run: echo a}\n")
    (tmp_path / ".orchestrate" / "state.db").mkdir(parents=True)  # sqlite cannot open a folder
    report = tmp_path / "report.json"
    result = run_cli("run", jobs, "--report-file", report)
    assert result.returncode == 0
    assert len(_warnings(result.stderr)) == 1
    assert statuses(report) == {"a": "ok"}


def test_expected_durations_come_from_recent_successes(tmp_path, write_jobs):
    from orchestrator.state import StateStore

    jobs = write_jobs(f"jobs:\n  nap: {{run: {json.dumps(child('sleep', 0.3))}}}\n")
    for _ in range(2):
        assert run_cli("run", jobs).returncode == 0
    store = StateStore(str(tmp_path / ".orchestrate"), jobs)
    store.read()
    durations = store.expected_durations()
    assert set(durations) == {"nap"} and 0.3 <= durations["nap"] < 5
    store.close()


def test_a_job_keeps_its_recent_durations_across_runs_up_to_the_limit(tmp_path, write_jobs):
    from orchestrator.state import RECENT_DURATIONS, StateStore

    jobs = write_jobs(f"jobs:\n  quick: {{run: {json.dumps(child('exit', 0))}}}\n  idle: {{run: 'false'}}\n")
    for _ in range(RECENT_DURATIONS + 2):
        assert run_cli("run", jobs, "--keep-going").returncode == 1
    store = StateStore(str(tmp_path / ".orchestrate"), jobs, threaded=False)
    latest = store.read()
    store.close()
    assert len(latest["quick"].durations) == RECENT_DURATIONS  # the oldest two went
    assert latest["idle"].durations == ()  # a failure measures nothing


def test_two_runs_creating_the_state_at_once_both_keep_it(tmp_path, write_jobs):
    # Switching a new database to WAL takes a lock SQLite's busy timeout does not wait for:
    # without waiting for it, one run in three went on without run state here.
    jobs = write_jobs("jobs:\n  a: {run: 'true', tags: [x]}\n  b: {run: 'true', tags: [y]}\n")
    for _ in range(10):
        shutil.rmtree(tmp_path / ".orchestrate", ignore_errors=True)
        first = start_cli("run", "-f", jobs, "--tag", "x", "-o", "none", "--report", "none")
        second = start_cli("run", "-f", jobs, "--tag", "y", "-o", "none", "--report", "none")
        outputs = [process.communicate(timeout=60) for process in (first, second)]
        assert [process.returncode for process in (first, second)] == [0, 0]
        assert [err for _, err in outputs] == ["", ""]
    history = run_cli("history", "-f", jobs)
    assert history.returncode == 0 and history.stdout.count("\n") >= 4, history.stdout
