"""Terminal behaviour: the status line on a TTY only, colour choice, -q, whole-block output."""

import fcntl
import io
import itertools
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time

import gevent
import pytest
from conftest import child, run_cli

from orchestrator import terminal
from orchestrator.listeners import Fanout
from orchestrator.output import Reporter
from orchestrator.results import JobResult, RunSummary, Status

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colour codes (the status line uses \x1b[K, not these)
STATUS = re.compile(rb"\r\x1b\[K\[\d+/\d+\] \d+ running")


def clean_env(**extra) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "NO_COLOR", "FORCE_COLOR")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env["TERM"] = "xterm"
    env.update(extra)
    return env


def run_in_pty(*args, env=None, timeout=30.0) -> tuple[int, bytes]:
    """orchestrate with a pseudo-terminal (100 columns) as stdin, stdout and stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env or clean_env(),
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal has gone
                    break
                if not data:
                    break
                output += data
            elif process.poll() is not None:
                break
        return process.wait(timeout=10), output
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()


@pytest.fixture
def three_jobs(write_jobs):
    return write_jobs(
        "jobs:\n"
        + "".join(f"  job{i}:\n    run: {child('print', f'out{i}', 'sleep', 0.3)!r}\n" for i in range(3))
    )


@pytest.fixture
def one_fails(write_jobs):
    return write_jobs(f"""jobs:
  fine:
    run: {child("print", "fine-output")!r}
  broken:
    run: {child("print", "broken-output", "exit", 3)!r}
""")


def test_a_terminal_gets_a_status_line_redrawn_in_place(three_jobs):
    code, output = run_in_pty("run", three_jobs, "-j", "2")
    assert code == 0, output
    assert STATUS.search(output), output
    assert re.search(rb"\[\d/3\] 2 running: job\d, job\d", output)
    assert b"out0" in output and b"3 ok" in output
    # Cleared before the table: no status text after the last clear.
    assert b"running" not in output[output.rindex(b"\x1b[K") :]


def seconds_shown(text: bytes) -> float:
    """`~2.5s`/`~900ms` as the status line shows a time left under a minute, in seconds."""
    return float(text[:-2]) / 1000 if text.endswith(b"ms") else float(text[:-1])


def _record_a_success(jobs: str, name: str, seconds: float) -> None:
    """Put on record that job `name` of `jobs` succeeded in `seconds`, as a run of it would
    (test_state checks that runs record their durations; here no run has to take them)."""
    from orchestrator.loader import load
    from orchestrator.state import RecentDurations, StateStore, fingerprint, result_statements

    summary = RunSummary([JobResult(name, Status.OK, exit_code=0, start=1.0, end=1.0 + seconds)])
    summary.run_id, summary.started, summary.elapsed = "seeded", 1.0, seconds
    store = StateStore(os.path.join(os.path.dirname(jobs), ".orchestrate"), jobs, threaded=False)
    fingerprints = {name: fingerprint(load(jobs).jobs[name])}
    statements = result_statements(
        store.job_file, "seeded", {name: 0}, fingerprints, summary.results, {}, RecentDurations({})
    )
    store.record_finished_run(summary, [name], ["run"], statements)
    store.close()


def test_the_time_left_counts_down_while_a_long_job_runs_alone(write_jobs):
    fresh = write_jobs(f"jobs:\n  quick:\n    run: {child('sleep', 0.3)!r}\n", "fresh.yaml")
    first_code, first = run_in_pty("run", fresh)
    assert first_code == 0 and b"1 running: quick" in first, first
    assert b" left" not in first, first  # no duration on record, no time left
    jobs = write_jobs(f"jobs:\n  slow:\n    run: {child('sleep', 3)!r}\n")
    _record_a_success(jobs, "slow", 3.0)
    code, output = run_in_pty("run", jobs)
    assert code == 0, output
    # One job, so one start event: every other line showing it running is a tick's redraw.
    shown = [seconds_shown(m) for m in re.findall(rb"\r\x1b\[K\[0/1\] ~(\S+) left, 1 running: slow", output)]
    assert len(shown) >= 3, output  # the start, then a redraw about every second
    assert shown[0] >= 2.0 and all(b < a for a, b in itertools.pairwise(shown)), shown
    last_clear = output.rindex(b"\x1b[K")
    assert b"running" not in output[last_clear:] and b"1 ok" in output[last_clear:]


def test_a_time_left_of_nothing_is_not_shown():
    """Once nothing is expected ahead (the last job just ended), the line says no `~0ms left`."""
    for left, shown in ((0.0, None), (0.0004, None), (0.3, b"~300ms left"), (90.0, b"~1m30s left")):
        status = terminal.StatusLine(1, width=lambda: 80, time_left=lambda left=left: left, tick=60)
        line = status.redraw()
        if shown is None:
            assert b"left" not in line and line.endswith(b"[0/1] 0 running"), line
        else:
            assert shown in line, line
        status.close()


def test_the_status_line_ticks_through_the_reporter_until_the_run_ends():
    stream = Writes()
    lefts = iter(range(1000, 0, -1))
    status = terminal.StatusLine(2, width=lambda: 80, time_left=lambda: next(lefts), tick=0.01)
    listener = Fanout([Reporter("grouped", stream=stream, status=status), status])
    listener.job_started("a", 0, 0.0)
    gevent.sleep(0.3)
    ticked = [w for w in stream.writes if w.startswith(b"\r\x1b[K[0/2] ~")]
    assert len(ticked) >= 3, stream.writes  # no event since the start: the ticker drew these
    listener.run_ended(RunSummary())
    listener.close()
    assert stream.writes[-1] == b"\r\x1b[K"
    writes_at_close = len(stream.writes)
    gevent.sleep(0.1)
    assert len(stream.writes) == writes_at_close  # nothing after the final clear
    assert not status.ticking


def test_the_status_line_stops_ticking_when_closed_and_never_ticks_without_a_time_left():
    calls = []
    status = terminal.StatusLine(1, width=lambda: 80, time_left=lambda: 5.0, tick=0.01)
    status.on_change = lambda: calls.append(None)
    status.job_started("a", 0, 0.0)
    gevent.sleep(0.1)
    assert len(calls) >= 3
    status.close()  # without run_ended: an engine that failed
    after_close = len(calls)
    gevent.sleep(0.1)
    assert len(calls) == after_close
    status.job_started("b", 1, 0.0)  # a late event starts no new ticker
    gevent.sleep(0.1)
    assert len(calls) == after_close + 1 and not status.ticking

    untimed = terminal.StatusLine(1, width=lambda: 80, tick=0.01)
    untimed.job_started("a", 0, 0.0)
    assert not untimed.ticking  # nothing on the line changes between events


def test_no_status_line_on_a_pipe(three_jobs):
    result = run_cli("run", three_jobs, "-j", "2")
    assert result.returncode == 0
    assert "running" not in result.stdout and "\x1b" not in result.stdout + result.stderr


def test_no_status_line_with_quiet_on_a_terminal(three_jobs):
    code, output = run_in_pty("run", three_jobs, "-q")
    assert code == 0
    assert output == b""


@pytest.mark.parametrize(
    "args, env, coloured",
    [
        ((), {}, True),  # auto on a terminal
        ((), {"NO_COLOR": "1"}, False),
        (("--color", "never"), {}, False),
    ],
)
def test_colour_on_a_terminal(one_fails, args, env, coloured):
    code, output = run_in_pty("run", one_fails, *args, env=clean_env(**env))
    assert code == 1
    assert bool(SGR.search(output)) == coloured, output


def test_colour_choice_on_a_terminal_beyond_the_runs_above():
    class Tty(io.BytesIO):
        def isatty(self):
            return True

    assert terminal.color_enabled("always", Tty(), {"NO_COLOR": "1"})  # an explicit flag wins
    assert not terminal.color_enabled("auto", Tty(), {"TERM": "dumb"})
    assert terminal.color_enabled("auto", Tty(), {"TERM": "xterm"})


def test_colour_through_a_pipe_only_when_asked(one_fails):
    assert not SGR.search(run_cli("run", one_fails).stdout.encode())
    assert SGR.search(run_cli("run", one_fails, "--color", "always").stdout.encode())


def test_quiet_prints_only_failures(one_fails, write_jobs):
    result = run_cli("run", one_fails, "-q")
    assert result.returncode == 1
    assert "broken-output" in result.stdout and "fine-output" not in result.stdout
    quiet_ok = write_jobs(f"jobs:\n  fine:\n    run: {child('print', 'fine-output')!r}\n", name="ok.yaml")
    result = run_cli("run", quiet_ok, "-q")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_status_wanted_only_on_a_terminal_outside_a_parallel_make():
    class Tty(io.BytesIO):
        def isatty(self):
            return True

    assert terminal.status_wanted(Tty(), quiet=False, parallel_make=False, environ={})
    assert not terminal.status_wanted(io.BytesIO(), quiet=False, parallel_make=False, environ={})
    assert not terminal.status_wanted(Tty(), quiet=True, parallel_make=False, environ={})
    assert not terminal.status_wanted(Tty(), quiet=False, parallel_make=True, environ={})
    assert not terminal.status_wanted(Tty(), quiet=False, parallel_make=False, environ={"TERM": "dumb"})


def test_status_line_text_and_width():
    line = terminal.StatusLine(40, width=lambda: 200)
    assert line.text() == "[0/40] 0 running"
    line.started("build[ARCH=arm64]")
    line.started("lint")
    line.finished("lint")
    assert line.text() == "[1/40] 1 running: build[ARCH=arm64]"
    for i in range(30):
        line.started(f"job-with-a-long-name-{i}")
    line.width = lambda: 60
    assert len(line.text()) == 59 and line.text().endswith("…")


def test_status_line_waits_for_a_partial_line_to_end():
    line = terminal.StatusLine(2, width=lambda: 80)
    line.started("a")
    assert line.redraw() == b"\r\x1b[K[0/2] 1 running: a"
    assert line.redraw() == b""  # unchanged: nothing to draw
    assert line.around(b"half a line") == b"\r\x1b[Khalf a line"  # status gone, stays away
    assert line.around(b" and the rest\n") == b" and the rest\n[0/2] 1 running: a"
    assert line.clear() == b"\r\x1b[K" and line.clear() == b""


class Writes:
    """A stream that records each write: what the terminal receives at once."""

    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))

    def flush(self):
        pass


def test_grouped_output_is_one_write_per_job_even_with_a_status_line(tmp_path):
    logs = []
    for i in range(3):
        path = tmp_path / f"j{i}.log"
        path.write_bytes(b"".join(b"j%d line %d\n" % (i, n) for n in range(200)))
        logs.append(str(path))
    stream = Writes()
    status = terminal.StatusLine(3, width=lambda: 80)
    listener = Fanout([Reporter("grouped", stream=stream, status=status), status])
    for i in range(3):
        listener.job_started(f"j{i}", i, 0.0)
    gevent.sleep(0)
    for i, log in enumerate(logs):
        listener.job_finished(JobResult(f"j{i}", Status.OK, exit_code=0, log_path=log))
    listener.close()
    blocks = [w for w in stream.writes if b"line" in w]
    assert len(blocks) == 3
    for i, block in enumerate(blocks):
        assert block.count(b"j%d line" % i) == 200 and block.count(b" line ") == 200
        assert block.startswith(b"\r\x1b[K--- j%d (ok) ---\n" % i)
    assert stream.writes[-1] == b"\r\x1b[K"  # the status line is gone at the end
