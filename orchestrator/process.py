"""The one place that starts, waits for, captures and kills a job's process.

Launching goes through the stdlib (vfork, no Python in the child) and waiting through
gevent's child watcher, as DESIGN.md measured; output is read by an io watcher callback
in the hub, written to the job's log as it arrives, and only a bounded tail is kept.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from dataclasses import dataclass

import gevent
from gevent.event import Event

TAIL_BYTES = 8192
READ_SIZE = 1 << 16


@dataclass
class ProcessResult:
    """How one attempt ended. `reason` says in words what the numbers do not."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stopped: bool = False  # terminated because the run was stopping
    tail: bytes = b""
    reason: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.stopped or self.reason)


class OutputSink:
    """Receives a job's merged output: appends to its log file, keeps a bounded tail.

    A failed log write (disk full) is remembered as `error`; reading goes on so the job
    is never blocked on a full pipe, but nothing more is written.
    """

    def __init__(self, log_file, on_chunk=None, tail_bytes: int = TAIL_BYTES):
        self.log_file = log_file
        self.on_chunk = on_chunk
        self.tail_bytes = tail_bytes
        self.tail = bytearray()
        self.error: str = ""

    def write(self, data: bytes) -> None:
        if not self.error and self.log_file is not None:
            try:
                self.log_file.write(data)
            except OSError as exc:
                self.error = f"writing the log failed: {exc.strerror or exc}"
        self.tail += data
        if len(self.tail) > 2 * self.tail_bytes:
            del self.tail[: -self.tail_bytes]
        if self.on_chunk is not None:
            self.on_chunk(data)

    def tail_text(self) -> bytes:
        return bytes(self.tail[-self.tail_bytes :])


def launch_error_reason(exc: OSError, argv, cwd) -> tuple[int | None, str]:
    """Exit code and words for a process that could not start (as a shell would say)."""
    if cwd is not None and exc.filename == cwd:
        return None, f"no such directory: {cwd}" if exc.errno == errno.ENOENT else f"cannot enter {cwd}: {exc.strerror}"
    if exc.errno == errno.ENOENT:
        return 127, f"command not found: {argv[0]}"
    if exc.errno in (errno.EACCES, errno.ENOEXEC):
        return 126, f"cannot execute {argv[0]}: {exc.strerror}"
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return None, f"out of file descriptors: {exc.strerror}"
    if exc.errno == errno.EAGAIN:
        return None, f"cannot start a process (process limit?): {exc.strerror}"
    return None, f"cannot start {argv[0]}: {exc.strerror or exc}"


def kill_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when nothing is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


class Process:
    """One running command in its own session, watched through the gevent hub."""

    def __init__(self, argv, env, cwd, sink: OutputSink):
        self.sink = sink
        self.exited = Event()
        self.status: int | None = None
        hub = gevent.get_hub()
        read_fd, write_fd = os.pipe()
        try:
            self.pid = self._spawn(argv, env, cwd, write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        # Started before the hub runs again, so the SIGCHLD for this pid cannot be missed.
        self._child = hub.loop.child(self.pid)
        self._child.start(self._on_exit)
        os.set_blocking(read_fd, False)
        self.read_fd = read_fd
        self._io = hub.loop.io(read_fd, 1)
        self._io.start(self._on_readable)

    @staticmethod
    def _spawn(argv, env, cwd, write_fd) -> int:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
        # gevent's SIGCHLD handler reaps it; keep the stdlib from polling it later.
        popen.returncode = 0
        return popen.pid

    def _on_exit(self) -> None:
        self.status = self._child.rstatus
        self._child.stop()
        self.exited.set()

    def _on_readable(self) -> None:
        # Runs in the hub: never raises, never blocks.
        try:
            data = os.read(self.read_fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.sink.write(data)
        else:
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self.read_fd is not None:
            self._io.stop()
            os.close(self.read_fd)
            self.read_fd = None

    def drain(self) -> None:
        """Take what is already in the pipe, then stop reading: a background child that
        still holds the pipe must not keep the job alive."""
        while self.read_fd is not None:
            try:
                data = os.read(self.read_fd, READ_SIZE)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self.sink.write(data)
        self._close_pipe()

    def wait(self, timeout: float | None = None) -> bool:
        return self.exited.wait(timeout)

    def signal_group(self, sig: int) -> bool:
        return kill_group(self.pid, sig)

    def terminate(self, grace: float) -> None:
        """SIGTERM the group, SIGKILL it if the leader is still there after `grace`."""
        if self.exited.is_set():
            return
        self.signal_group(signal.SIGTERM)
        if not self.wait(grace):
            self.signal_group(signal.SIGKILL)
            self.wait()

    def kill_leftovers(self, grace: float) -> None:
        """Processes the job left in its group after it exited: TERM now, KILL later."""
        if self.signal_group(signal.SIGTERM):
            _leftover_groups.add(self.pid)
            gevent.spawn_later(grace, self._kill_leftover_group)

    def _kill_leftover_group(self) -> None:
        _leftover_groups.discard(self.pid)
        self.signal_group(signal.SIGKILL)

    def result(self) -> ProcessResult:
        status = self.status or 0
        if os.WIFSIGNALED(status):
            return ProcessResult(signal=os.WTERMSIG(status), exit_code=None)
        return ProcessResult(exit_code=os.waitstatus_to_exitcode(status))


def run_process(argv, env, cwd, sink: OutputSink, timeout: float | None, kill_grace: float,
                stop: Event | None = None) -> ProcessResult:
    """Run one attempt to its end: exit, timeout (TERM, then KILL), or the run stopping."""
    try:
        process = Process(argv, env, cwd, sink)
    except OSError as exc:
        code, reason = launch_error_reason(exc, argv, cwd)
        return ProcessResult(exit_code=code, reason=reason)
    timed_out = stopped = False
    try:
        if stop is None:
            timed_out = not process.wait(timeout)
        else:
            gevent.wait([process.exited, stop], timeout=timeout, count=1)
            if not process.exited.is_set():
                timed_out, stopped = not stop.is_set(), stop.is_set()
        if not process.exited.is_set():
            process.terminate(kill_grace)
    finally:
        if not process.exited.is_set():  # killed greenlet: never leave the group running
            process.signal_group(signal.SIGKILL)
        process.drain()
        process.kill_leftovers(kill_grace)
    result = process.result()
    result.timed_out, result.stopped = timed_out, stopped
    result.tail = sink.tail_text()
    if sink.error:
        result.reason = sink.error
    return result


_leftover_groups: set[int] = set()


def kill_all_leftovers() -> None:
    """At the end of a run: nothing a job started may outlive it."""
    while _leftover_groups:
        kill_group(_leftover_groups.pop(), signal.SIGKILL)
