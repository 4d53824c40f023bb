"""The one place that starts, waits for, captures and kills a job's process.

Launching goes through the stdlib (vfork, no Python in the child) and waiting through
gevent's child watcher (docs/architecture.md, "Processes"); output is read by an io watcher
callback in the hub, written to the job's log as it arrives, and only a bounded tail is kept.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event

TAIL_BYTES = 8192
WATCHDOG_SECONDS = 1.0
READ_SIZE = 1 << 16

if TYPE_CHECKING:
    from orchestrator.supervisor import Supervisor


@dataclass
class ProcessResult:
    """How one attempt ended. `reason` says in words what the numbers do not."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    stopped: bool = False  # terminated because the run was stopping
    tail: bytes = b""
    reason: str = ""
    host: str | None = None  # where it ran, when not on this machine

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.stopped or self.reason)


class OutputSink:
    """Receives a job's merged output: appends to its log file, keeps a bounded tail.

    A failed log write (disk full) is remembered as `error`; reading goes on so the job
    is never blocked on a full pipe, but nothing more is written.
    """

    def __init__(
        self, log_file: Any, on_chunk: Callable[[bytes], None] | None = None, tail_bytes: int = TAIL_BYTES
    ) -> None:
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


def launch_error_reason(exc: OSError, argv: Sequence[str], cwd: str | None) -> tuple[int | None, str]:
    """Exit code and words for a process that could not start (as a shell would say)."""
    if cwd is not None and exc.filename == cwd:
        return (
            None,
            f"no such directory: {cwd}"
            if exc.errno == errno.ENOENT
            else f"cannot enter {cwd}: {exc.strerror}",
        )
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


def seal_inherited_descriptors(keep: Iterable[int] = ()) -> None:
    """Make every descriptor above 2 that this process inherited non-inheritable, except
    `keep`: posix_spawn passes on whatever is inheritable, and a job holding, say, the
    pipe multiprocessing uses to see a worker die would hide that death (Popen's
    close_fds did this for us)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the directory's own descriptor, closed by now


# Python ignores these at start-up and an ignored signal stays ignored across exec: reset
# them, as Popen's restore_signals does, or `yes | head -1` in a job says "Broken pipe".
RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ") if hasattr(signal, name)
)


def _posix_spawn(
    program: str, argv: Sequence[str], env: Mapping[str, str] | None, write_fd: int, pass_fds: Iterable[int]
) -> int:
    """The fast launch: glibc's posix_spawn is a vfork and exec, with no Python
    in the child. Descriptors are non-inheritable in Python, so only 0-2 and pass_fds pass."""
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, write_fd, 1),
        (os.POSIX_SPAWN_DUP2, write_fd, 2),
    ]
    return os.posix_spawn(
        program,
        list(argv),
        os.environ if env is None else env,
        file_actions=actions,
        setsid=True,
        setsigdef=RESTORED_SIGNALS,
    )


class Process:
    """One running command in its own session, watched through the gevent hub."""

    def __init__(
        self,
        supervisor: Supervisor,
        job_name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        sink: OutputSink,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.supervisor = supervisor
        self.sink = sink
        self.exited = Event()
        self.status: int | None = None
        hub = gevent.get_hub()
        # gevent installs its SIGCHLD handler with the first child watcher; a child that
        # exits before that is never reaped, so install it before the first launch.
        hub.loop.install_sigchld()
        read_fd, write_fd = os.pipe()
        try:
            self.pid = self._spawn(supervisor, argv, env, cwd, write_fd, pass_fds)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        supervisor.started(self.pid, job_name)
        # Started before the hub runs again, so the SIGCHLD for this pid cannot be missed.
        self._child = hub.loop.child(self.pid)
        self._child.start(self._on_exit)
        os.set_blocking(read_fd, False)
        self.read_fd: int | None = read_fd
        self._io = hub.loop.io(read_fd, 1)
        self._io.start(self._on_readable)

    @staticmethod
    def _spawn(
        supervisor: Supervisor,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        write_fd: int,
        pass_fds: tuple[int, ...] = (),
    ) -> int:
        if cwd is None or cwd == supervisor.directory:  # posix_spawn cannot change directory
            return _posix_spawn(supervisor.find_program(argv[0], env), argv, env, write_fd, pass_fds)
        import subprocess  # only for a job with a cwd of its own: ~2 ms of every start otherwise

        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,  # a jobserver's pipe, for the makes a job runs
        )
        # gevent's SIGCHLD handler reaps it; keep the stdlib from polling it later.
        popen.returncode = 0
        return popen.pid

    def _on_exit(self, status: int | None = None) -> None:
        self.status = self._child.rstatus if status is None else status
        self._child.stop()
        self.supervisor.exited(self.pid)
        self.exited.set()

    def _on_readable(self) -> None:
        # Runs in the hub: never raises, never blocks.
        if self.read_fd is None:
            return
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

    def wait(self, timeout: float | None = None, stop: Event | None = None) -> bool:
        """Wait until the process exits, `timeout` passes or `stop` is set; True if it exited.

        Waits in slices, checking with waitpid between them: a lost SIGCHLD must cost a
        second, not wedge the run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = [self.exited] if stop is None else [self.exited, stop]
        while True:
            slice_ = (
                WATCHDOG_SECONDS if deadline is None else min(WATCHDOG_SECONDS, deadline - time.monotonic())
            )
            if slice_ > 0:
                gevent.wait(events, timeout=slice_, count=1)
            if self.exited.is_set() or (stop is not None and stop.is_set()):
                break
            self._check_exit()
            if self.exited.is_set() or (deadline is not None and time.monotonic() >= deadline):
                break
        return self.exited.is_set()

    def _check_exit(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            self._on_exit(status)

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

    def result(self) -> ProcessResult:
        status = self.status or 0
        if os.WIFSIGNALED(status):
            return ProcessResult(signal=os.WTERMSIG(status), exit_code=None)
        return ProcessResult(exit_code=os.waitstatus_to_exitcode(status))


def run_process(
    supervisor: Supervisor,
    job_name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    sink: OutputSink,
    timeout: float | None,
    stop: Event | None = None,
    pass_fds: tuple[int, ...] = (),
) -> ProcessResult:
    """Run one attempt to its end: exit, timeout (TERM, then KILL after the supervisor's
    grace), or the run stopping; what it leaves in its group is the supervisor's to end."""
    kill_grace = supervisor.kill_grace
    try:
        process = Process(supervisor, job_name, argv, env, cwd, sink, pass_fds)
    except OSError as exc:
        code, reason = launch_error_reason(exc, argv, cwd)
        return ProcessResult(exit_code=code, reason=reason)
    timed_out = stopped = False
    try:
        if not process.wait(timeout, stop):
            stopped = stop is not None and stop.is_set()
            timed_out = not stopped
        if not process.exited.is_set():
            process.terminate(kill_grace)
    finally:
        if not process.exited.is_set():  # killed greenlet: never leave the group running
            process.signal_group(signal.SIGKILL)
        process.drain()
        supervisor.leave_behind(process.pid)
    result = process.result()
    result.timed_out, result.stopped = timed_out, stopped
    result.tail = sink.tail_text()
    if sink.error:
        result.reason = sink.error
    return result
