"""Real processes through orchestrator.process, driven by tests/child.py."""

import errno
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import gevent
import pytest
from conftest import alive, child, child_argv
from gevent.event import Event

from orchestrator.process import TAIL_BYTES, OutputSink, Process, launch_error_reason, run_process
from orchestrator.supervisor import Supervisor


def run(argv, timeout=30, grace=1.0, stop=None, log=None, cwd=None, env=None):
    sink = OutputSink(log if log is not None else io.BytesIO())
    return run_process(Supervisor("test", grace), "job", argv, env, cwd, sink, timeout, stop), sink


def wait_gone(pid, seconds=10.0):
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    return not alive(pid)


@pytest.mark.parametrize("code", [0, 1, 3, 127, 255])
def test_exit_codes(code):
    result, _ = run(child_argv("exit", code))
    assert result.exit_code == code and result.signal is None
    assert result.succeeded == (code == 0)


def test_killed_by_a_signal_reports_the_signal():
    result, _ = run(child_argv("kill-self", "SIGKILL"))
    assert result.signal == signal.SIGKILL and result.exit_code is None and not result.succeeded


@pytest.mark.parametrize("cwd", [None, "/"], ids=["posix_spawn", "popen"])
def test_a_job_gets_default_sigpipe_like_under_a_shell(cwd):
    # Python ignores SIGPIPE; were that inherited, `yes` would report a broken pipe.
    result, sink = run(["/bin/sh", "-c", "yes | head -1; grep SigIgn /proc/self/status"], cwd=cwd)
    output = sink.tail_text().decode()
    assert result.exit_code == 0 and output.startswith("y\n"), output
    assert "Broken pipe" not in output
    ignored = int(output.split("SigIgn:")[1].split()[0], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))


def test_stdout_and_stderr_merged_in_order():
    log = io.BytesIO()
    run(child_argv("print", "one", "stderr", "two", "print", "three"), log=log)
    assert log.getvalue() == b"one\ntwo\nthree\n"


def test_shell_string_runs_through_sh():
    log = io.BytesIO()
    result, _ = run(["/bin/sh", "-c", "echo $((6*7)); exit 4"], log=log)
    assert log.getvalue() == b"42\n" and result.exit_code == 4


def test_timeout_kills_a_group_whose_shell_ignores_sigterm(tmp_path):
    pidfile = tmp_path / "pid"
    script = f"trap '' TERM; {child('ignore-term', 'pidfile', pidfile, 'sleep', 60)}"
    started = time.monotonic()
    result, _ = run(["/bin/sh", "-c", script], timeout=0.5, grace=0.5)
    assert result.timed_out and result.signal == signal.SIGKILL
    assert time.monotonic() - started < 15
    assert wait_gone(int(pidfile.read_text()))


def test_stop_event_terminates_with_sigterm():
    stop = Event()
    gevent.spawn_later(0.3, stop.set)
    result, _ = run(child_argv("sleep", 60), stop=stop)
    assert result.stopped and not result.timed_out and result.signal == signal.SIGTERM


def test_background_grandchild_holding_the_pipe_neither_hangs_nor_survives(tmp_path):
    pidfile = tmp_path / "bg"
    started = time.monotonic()
    log = io.BytesIO()
    result, _ = run(
        child_argv("print", "before", "background", 60, pidfile, "print", "after"), grace=0.3, log=log
    )
    assert result.exit_code == 0
    assert time.monotonic() - started < 10
    assert log.getvalue() == b"before\nafter\n"
    assert wait_gone(int(pidfile.read_text()))


# Runs in a fresh interpreter, whose memory is not the high-water mark the suite left.
MEASURE_FLOOD = """
import json, sys
from orchestrator.process import OutputSink, run_process
from orchestrator.supervisor import Supervisor

def kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

argv, log_path = json.loads(sys.argv[1]), sys.argv[2]
run_process(Supervisor("t", 1.0), "warm", argv[:2] + ["bytes", "100000"], None, None, OutputSink(None), 60)
before = kib("VmRSS")
with open(log_path, "wb") as log:
    sink = OutputSink(log)
    result = run_process(Supervisor("t", 1.0), "flood", argv, None, None, sink, 60)
print(json.dumps({"exit_code": result.exit_code, "grown_kib": kib("VmHWM") - before,
                  "kept": len(sink.tail), "tail": sink.tail_text().decode()}))
"""


def test_fifty_megabytes_land_whole_in_the_log_with_flat_memory(tmp_path):
    size = 50 * 1024 * 1024
    log_path = tmp_path / "big.log"
    argv = child_argv("bytes", size)
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE_FLOOD, json.dumps(argv), str(log_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert measured.returncode == 0, measured.stderr
    found = json.loads(measured.stdout)
    assert found["exit_code"] == 0
    assert os.path.getsize(log_path) == size
    with open(log_path, "rb") as log:
        log.seek(size - TAIL_BYTES)
        assert found["tail"].encode() == log.read()
    assert found["kept"] <= 2 * TAIL_BYTES  # what the sink holds, not a slice of it
    assert found["grown_kib"] < 20 * 1024, f"memory grew by {found['grown_kib']} KiB"


def test_command_not_found_is_exit_127_with_a_reason():
    result, _ = run(["no-such-command-xyz"])
    assert result.exit_code == 127 and "command not found: no-such-command-xyz" in result.reason


def test_missing_cwd_fails_with_a_reason(tmp_path):
    result, _ = run(child_argv("exit", 0), cwd=str(tmp_path / "nope"))
    assert not result.succeeded and "no such directory" in result.reason


def test_missing_shell_is_command_not_found():
    result, _ = run(["/no/such/shell", "-c", "true"])
    assert result.exit_code == 127 and "/no/such/shell" in result.reason


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
@pytest.mark.no_cover  # a time bound: line tracing would measure the tracer
def test_hub_stays_responsive_while_a_job_floods_its_output():
    # A ticker asking for 5 ms sleeps runs from the first chunk of a 5 MiB flood: were the
    # hub blocked ~20 ms per chunk read, nearly every tick would wait that long.
    gaps: list[float] = []

    def tick() -> None:
        last = time.monotonic()
        for _ in range(30):
            gevent.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = gevent.Greenlet(tick)

    def start_ticking(data: bytes) -> None:
        if not ticker.started:
            ticker.start()

    sink = OutputSink(io.BytesIO(), on_chunk=start_ticking)
    argv = child_argv("bytes", 5 * 1024 * 1024, "sleep", 0.3)
    result = run_process(Supervisor("test", 1.0), "flood", argv, None, None, sink, 30)
    assert result.exit_code == 0
    assert ticker.join(5) is None and ticker.successful()  # bounded: the ticker ended
    assert len(gaps) == 30
    assert statistics.median(gaps) < 0.015, sorted(gaps)


def test_log_write_failure_fails_the_job_with_a_reason():
    class FullDisk:
        def write(self, data):
            raise OSError(28, "No space left on device")

    result, sink = run(child_argv("print", "hello"), log=FullDisk())
    assert not result.succeeded and "No space left on device" in result.reason
    assert sink.tail_text() == b"hello\n"


def test_a_lost_sigchld_costs_a_second_not_a_hang():
    # With SIGCHLD blocked the hub never hears of the exit, as when the handler was missing.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    try:
        process = Process(Supervisor("test"), "job", child_argv("exit", 7), None, None, OutputSink(None))
        with gevent.Timeout(10):
            assert process.wait(30)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
    process.drain()
    assert process.result().exit_code == 7


def test_the_kernels_child_lists_and_a_proc_scan_find_the_same_children():
    from orchestrator.supervisor import _children, _children_by_scan

    sleepers = [subprocess.Popen(child_argv("sleep", 30)) for _ in range(3)]
    try:
        mine = {sleeper.pid for sleeper in sleepers}
        assert mine <= set(_children())
        assert mine <= set(_children_by_scan())
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


# -- pinned by mutation testing: launch failures, the sink's bounds, odd process names --


@pytest.mark.parametrize("cwd", [None, "/"], ids=["posix_spawn", "popen"])
@pytest.mark.parametrize(
    "mode, content, why",
    [(0o644, "#!/bin/sh\n", "Permission denied"), (0o755, "not a program\n", "Exec format error")],
    ids=["not-executable", "not-a-program"],
)
def test_a_file_that_cannot_be_executed_is_exit_126_with_a_reason(tmp_path, cwd, mode, content, why):
    tool = tmp_path / "tool"
    tool.write_text(content)
    tool.chmod(mode)
    result, _ = run([str(tool), "arg"], cwd=cwd)
    assert (result.exit_code, result.reason) == (126, f"cannot execute {tool}: {why}")


@pytest.mark.parametrize(
    "error, expected",
    [
        (
            OSError(errno.EMFILE, "Too many open files"),
            (None, "out of file descriptors: Too many open files"),
        ),
        (OSError(errno.ENFILE, "Too many files"), (None, "out of file descriptors: Too many files")),
        (
            OSError(errno.EAGAIN, "Try again"),
            (None, "cannot start a process (process limit?): Try again"),
        ),
        (OSError(errno.E2BIG, "Argument list too long"), (None, "cannot start prog: Argument list too long")),
        (OSError("no errno"), (None, "cannot start prog: no errno")),
        (
            OSError(errno.EACCES, "Permission denied", "/work"),
            (None, "cannot enter /work: Permission denied"),
        ),
        (OSError(errno.ENOENT, "No such file", "/work"), (None, "no such directory: /work")),
        (OSError(errno.ENOENT, "No such file", "prog"), (127, "command not found: prog")),
    ],
)
def test_each_launch_error_has_its_exit_code_and_words(error, expected):
    assert launch_error_reason(error, ["prog", "arg"], "/work") == expected


def test_the_sink_keeps_between_one_and_two_tails_and_shows_the_last_one():
    chunks: list[bytes] = []
    sink = OutputSink(None, on_chunk=chunks.append, tail_bytes=4)
    sink.write(b"abcdefgh")
    assert bytes(sink.tail) == b"abcdefgh" and sink.tail_text() == b"efgh"  # two tails: kept
    sink.write(b"i")
    assert bytes(sink.tail) == b"fghi" and sink.tail_text() == b"fghi"  # past two: cut to one
    assert chunks == [b"abcdefgh", b"i"]


def test_after_a_failed_log_write_nothing_more_is_written():
    class FailsOnce:
        def __init__(self):
            self.calls = 0
            self.written: list[bytes] = []

        def write(self, data):
            self.calls += 1
            if self.calls == 1:
                raise OSError("log gone")
            self.written.append(data)

    log = FailsOnce()
    sink = OutputSink(log)
    sink.write(b"one")
    sink.write(b"two")
    assert sink.error == "writing the log failed: log gone"  # no strerror: the error itself
    assert log.calls == 1 and log.written == []
    assert sink.tail_text() == b"onetwo"


def test_a_child_whose_name_holds_a_parenthesis_is_still_found(tmp_path):
    from orchestrator.supervisor import _children_by_scan

    odd = tmp_path / "x) Z 1"  # /proc/PID/stat shows the name in parentheses: "(x) Z 1)"
    odd.symlink_to(sys.executable)
    sleeper = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        assert sleeper.pid in _children_by_scan()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_job_gets_its_own_environment_and_the_result_carries_the_tail():
    env = {"PATH": os.environ["PATH"], "ONLY_HERE": "yes"}
    result, _ = run(child_argv("env", "ONLY_HERE", "env", "HOME"), env=env)
    assert result.tail == b"ONLY_HERE=yes\nHOME=\n"  # not this process's environment
    assert (result.exit_code, result.timed_out, result.stopped, result.reason) == (0, False, False, "")


def test_a_killed_attempt_kills_its_process_at_once(tmp_path):
    pidfile = tmp_path / "pid"
    # The grace is long: only the SIGKILL for a killed attempt can end this child in time.
    attempt = gevent.spawn(run, child_argv("ignore-term", "pidfile", pidfile, "sleep", 60), grace=60)
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the child never started"
        gevent.sleep(0.02)
    attempt.kill()
    assert wait_gone(int(pidfile.read_text()), 5)
