"""One run, one lifecycle: listener events, slots, typed messages, stopping with a stuck reader."""

import ast
import fcntl
import json
import os
import pathlib
import signal
import struct
import termios
import time

import gevent
import pytest
from conftest import alive, child, run_cli, start_cli, wait_for
from fakes import FakeExecutor, jobs_of, make_engine

from orchestrator.executors.processes import Done, KillAttempt, dispatch
from orchestrator.listeners import Fanout, RunListener
from orchestrator.model import Job
from orchestrator.output import Reporter
from orchestrator.results import JobResult, Status

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "orchestrator"


class Recorder(RunListener):
    """Every event, in order, as (event, name, ...) tuples."""

    def __init__(self, wants_output=False):
        self.events = []
        self.wants_output = wants_output

    def run_started(self, run):
        self.events.append(("run_started", run.names))

    def job_ready(self, name, at):
        self.events.append(("ready", name))

    def job_started(self, name, slot, at):
        self.events.append(("started", name, slot))

    def job_output(self, name, data):
        self.events.append(("output", name))

    def attempt_ended(self, name, attempt):
        self.events.append(("attempt", name, attempt.number, attempt.exit_code))

    def job_finished(self, result):
        self.events.append(("finished", result.name, result.status))

    def run_ended(self, summary):
        self.events.append(("run_ended", summary.exit_code))


def test_a_run_tells_its_listener_each_step_of_each_job_in_order():
    jobs = jobs_of(
        Job("a", "true"), Job("b", "true", needs=("a",), retries=1), Job("c", "true", needs=("b",))
    )
    executor = FakeExecutor(codes={"b": [1, 0], "c": 1})
    recorder = Recorder()
    summary = make_engine(jobs, executor, jobs_limit=2, listener=Fanout([recorder])).run()
    assert summary.exit_code == 1
    assert recorder.events == [
        ("run_started", ("a", "b", "c")),
        ("ready", "a"),
        ("started", "a", 0),
        ("attempt", "a", 1, 0),
        ("finished", "a", Status.OK),
        ("ready", "b"),
        ("started", "b", 0),
        ("attempt", "b", 1, 1),
        ("attempt", "b", 2, 0),
        ("finished", "b", Status.OK),
        ("ready", "c"),
        ("started", "c", 0),
        ("attempt", "c", 1, 1),
        ("finished", "c", Status.FAILED),
        ("run_ended", 1),
    ]
    result_b = summary.results[1]
    assert [attempt.number for attempt in result_b.tries] == [1, 2] and result_b.attempts == 2
    assert result_b.ready is not None and result_b.ready <= result_b.start <= result_b.tries[0].start


def test_slots_are_lanes_no_two_running_jobs_share():
    jobs = jobs_of(*(Job(f"j{i}", "true") for i in range(12)))
    durations = {f"j{i}": 0.01 * (1 + i % 4) for i in range(12)}
    summary = make_engine(jobs, FakeExecutor(durations=durations), jobs_limit=3).run()
    spans = [(r.slot, r.tries[0].start, r.tries[0].end) for r in summary.results]
    assert {slot for slot, _, _ in spans} == {0, 1, 2}
    for slot in range(3):
        lane = sorted((start, end) for s, start, end in spans if s == slot)
        assert all(earlier[1] <= later[0] for earlier, later in zip(lane, lane[1:], strict=False))


def test_output_reaches_only_the_listeners_that_want_it():
    wanting, not_wanting = Recorder(wants_output=True), Recorder()
    fanout = Fanout([wanting, not_wanting])
    assert fanout.wants_output
    fanout.job_output("a", b"hello\n")
    assert wanting.events == [("output", "a")] and not_wanting.events == []
    assert not Fanout([Recorder()]).wants_output


def test_fanout_closes_every_listener_even_when_one_fails():
    closed = []

    class Failing(RunListener):
        def close(self):
            raise OSError("disk full")

    class Counting(RunListener):
        def close(self):
            closed.append(True)

    with pytest.raises(OSError, match="disk full"):
        Fanout([Failing(), Counting()]).close()
    assert closed == [True]


def test_an_unknown_message_is_an_error_not_dropped():
    seen = []
    dispatch({Done: seen.append}, Done(1, None))
    assert seen == [Done(1, None)]
    with pytest.raises(TypeError, match="unexpected message"):
        dispatch({Done: seen.append}, KillAttempt(1))


def test_the_reporter_fails_loudly_on_an_unknown_message():
    reporter = Reporter("grouped", stream=open(os.devnull, "wb"))  # noqa: SIM115 -- closed by the reporter
    reporter.inbox.put(("finished", None))  # an untyped message, as the old code sent them
    with pytest.raises(TypeError, match="reporter: unexpected message"):
        reporter.close()
    gevent.sleep(0)


def _module_level_mutables(path):
    """Lower-case module-level names bound to a dict, list or set display or call."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            mutable = isinstance(value, (ast.Dict, ast.List, ast.Set)) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", "") in ("dict", "list", "set")
            )
            for target in targets:
                if mutable and isinstance(target, ast.Name) and not target.id.isupper():
                    found.append(f"{path.name}:{node.lineno} {target.id}")
    return found


def test_no_mutable_module_level_state_in_the_package():
    found = [entry for path in sorted(PACKAGE.rglob("*.py")) for entry in _module_level_mutables(path)]
    assert found == []


# -- a reader that never reads, and the run is stopped --


def _pipe_full(pipe) -> bool:
    """Whether the writer of this pipe cannot write a page more: the reporter is stuck writing."""
    waiting = struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    return waiting > fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ) - 4096


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_run_ends_even_when_nobody_reads_its_stdout(tmp_path, write_jobs, signum, code):
    pidfile = tmp_path / "sleeper.pid"
    jobs = write_jobs(f"""jobs:
  chatty: {{run: {json.dumps(child("bytes", 400_000))}}}
  sleeper: {{run: {json.dumps(child("pidfile", pidfile, "sleep", 120))}}}
""")
    process = start_cli("run", jobs, "-k", "--kill-grace", "1s", text=False)
    try:
        assert wait_for(pidfile.exists)
        sleeper = int(pidfile.read_text())
        assert wait_for(lambda: _pipe_full(process.stdout)), "chatty's output never filled the pipe"
        process.send_signal(signum)
        assert wait_for(lambda: not alive(sleeper)), "the job was not stopped"
        stopped = time.monotonic()
        assert wait_for(lambda: process.poll() is not None, 15), "orchestrate waited for its reader"
        waited = time.monotonic() - stopped
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code
    assert waited < 10  # the reporter gives up after 2 s; a generous bound on a busy machine
    assert b"Traceback" not in process.stderr.read()


def test_an_undrained_reader_still_gets_everything_when_the_run_was_not_stopped(tmp_path, write_jobs):
    jobs = write_jobs(f"jobs:\n  chatty: {{run: {json.dumps(child('bytes', 400_000))}}}\n")
    process = start_cli("run", jobs, text=False)
    time.sleep(1.5)  # longer than the reporter's patience after a stop: here it must wait
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert out.count(b"x" * 1023 + b"\n") == 400_000 // 1024  # and the rest of a line:
    assert b"\n" + b"x" * (400_000 % 1024) + b"\n" in out


# -- what a run says about itself (issue 11's honest reasons and CI progress) --


def test_the_runs_timeout_says_so_on_stderr_at_once(tmp_path, write_jobs):
    jobs = write_jobs(f"jobs:\n  slow: {{run: {json.dumps(child('sleep', 30))}}}\n  quick: {{run: 'true'}}\n")
    result = run_cli("run", jobs, "--timeout", "1s", "--kill-grace", "1s")
    assert result.returncode == 124
    assert "orchestrate: run timed out after 1s, stopping 1 running job\n" in result.stderr


def test_a_timed_out_allowed_job_says_it_timed_out(tmp_path, write_jobs):
    jobs = write_jobs(
        f"jobs:\n  slow: {{run: {json.dumps(child('sleep', 30))}, timeout: 1s, allow_failure: true}}\n"
    )
    report = tmp_path / "report.json"
    result = run_cli("run", jobs, "--kill-grace", "1s", "--report-file", report)
    assert result.returncode == 0, result.stderr
    job = json.loads(report.read_text())["jobs"][0]
    assert (job["status"], job["reason"], job["timed_out"], job["signal"]) == (
        "allowed",
        "timed out after 1s",
        True,
        "SIGTERM",
    )
    assert "timed out after 1s" in result.stdout


def test_progress_lines_tell_ci_logs_each_start_and_end(write_jobs):
    jobs = write_jobs("jobs:\n  a: {run: 'true'}\n  b: {run: 'false', needs: [a]}\n")
    result = run_cli("run", jobs, "--progress", "lines")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.rsplit(" ", 1)[0] if " ok " in line or "failed" in line else line for line in lines] == [
        "[1/2] started a",
        "[1/2] ok a",
        "[2/2] started b",
        "[2/2] failed b",
    ]


def test_progress_is_lines_when_ci_is_set_and_none_otherwise(write_jobs):
    jobs = write_jobs("jobs:\n  a: {run: 'true'}\n")
    assert "[1/1] started a" in run_cli("run", jobs, env={"CI": "true"}).stderr
    assert "started" not in run_cli("run", jobs, env={"CI": ""}).stderr


def test_github_actions_gets_each_jobs_output_in_a_group(write_jobs):
    jobs = write_jobs("jobs:\n  a: {run: 'echo hello'}\n")
    result = run_cli("run", jobs, env={"GITHUB_ACTIONS": "true"})
    assert result.returncode == 0
    assert result.stdout.startswith("::group::a (ok)\nhello\n::endgroup::\n")


def test_resumed_jobs_do_not_replay_their_old_output(tmp_path, write_jobs):
    gate = tmp_path / "gate"
    jobs = write_jobs(
        f"jobs:\n  a: {{run: 'echo old output of a'}}\n  b: {{run: 'test -e {gate}', needs: [a]}}\n"
    )
    assert run_cli("run", jobs).returncode == 1
    gate.touch()
    result = run_cli("run", jobs, "--resume")
    assert result.returncode == 0, result.stderr
    assert "old output of a" not in result.stdout
    assert "ok (resumed)" in result.stdout


class Guard:
    """Says `done` needs no run; records every before and after."""

    def __init__(self):
        self.calls = []

    def before(self, job):
        self.calls.append(("before", job.name))
        if job.name == "done":
            return JobResult(job.name, Status.UP_TO_DATE)
        return None

    def after(self, job, result):
        self.calls.append(("after", job.name, result.status if result else None))


def test_a_guard_decides_before_a_job_runs_and_hears_how_it_ended():
    jobs = jobs_of(Job("done", "true"), Job("build", "true", needs=("done",)))
    executor, guard = FakeExecutor(), Guard()
    engine = make_engine(jobs, executor, jobs_limit=2)
    engine.config = engine.config._replace(guard=guard)
    summary = engine.run()
    assert executor.started == ["build"]
    assert [(r.name, r.status) for r in summary.results] == [
        ("done", Status.UP_TO_DATE),
        ("build", Status.OK),
    ]
    assert summary.results[0].ready is not None and summary.exit_code == 0
    assert guard.calls == [("before", "done"), ("before", "build"), ("after", "build", Status.OK)]
