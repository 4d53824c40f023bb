"""One attempt on a Dask worker: own session, output streamed back, timeout and stop applied there."""

# Runs inside a Dask worker, a threaded asyncio program: no gevent here, and nothing from the
# rest of orchestrator, so the executor can ship this module by value to workers that do not
# have orchestrate installed.
from __future__ import annotations

import errno
import functools
import hashlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Any

CHUNK = 1 << 16
FLUSH_SECONDS = 0.01  # output is sent at most this late; a chatty job costs few messages
EXIT_POLL_SECONDS = 0.02  # only where the kernel has no pidfd
STOP_POLL_SECONDS = 0.5  # the stop watcher's long poll: a stop is seen at once, a cancel this late

with open(__file__, "rb") as _source:
    _SOURCE_DIGEST = hashlib.sha256(_source.read()).hexdigest()


def run_remote(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt where Dask placed it; the result is a plain dict (see `_result`).

    spec: argv, env (the file's layers, ORCHESTRATE_* and --env names), cwd, timeout,
    kill_grace, topic and token (where output goes and under which name), stop (the name
    of the distributed.Event the parent sets to stop the run)."""
    from distributed import get_worker

    worker = get_worker()
    send = _Sender(worker, spec["topic"], spec["token"])
    result = _run(spec, worker, send)
    # The result as an event too, after the output on the same stream: the parent need not
    # fetch it from this worker, a round trip per attempt.
    send.message("end", result)
    return result


def _run(spec: dict[str, Any], worker: Any, send: _Sender) -> dict[str, Any]:
    task_key = worker.get_current_task()
    started = time.monotonic()
    env = {**os.environ, **spec["env"]}
    try:
        program = _find_program(spec["argv"][0], env, spec["cwd"])
        process = subprocess.Popen(
            [*_die_with_worker(), program, *spec["argv"][1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=spec["cwd"],
            start_new_session=True,
        )
    except OSError as error:
        launch_error = [error.errno, error.strerror or str(error), str(error.filename or "")]
        return _result(started, worker.address, launch_error=launch_error)
    send.message("start", worker.address, socket.gethostname(), process.pid)
    wake_read, wake_write = os.pipe()
    watch = _StopWatch.join(worker, spec["stop"], task_key, wake_write)
    try:
        outcome = _supervise(process, spec["timeout"], spec["kill_grace"], wake_read, send)
    finally:
        watch.leave(task_key)  # before the pipe closes: the watch never writes to a reused fd
        if process.returncode is None:  # this thread failed: never leave the group running
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        os.close(wake_read)
        os.close(wake_write)
        send.flush()
    _kill_leftovers(process.pid, spec["kill_grace"])
    return _result(started, worker.address, chunks=send.count, **outcome)


def source_digest() -> str:
    """The hash of this module's source as it was imported: the parent ships the module with
    each task unless every worker runs this very code."""
    return _SOURCE_DIGEST


def _result(
    started: float,
    worker: str,
    exit_code: int | None = None,
    signal_number: int | None = None,
    timed_out: bool = False,
    stopped: bool = False,
    reason: str = "",
    launch_error: list[Any] | None = None,
    chunks: int = 0,
) -> dict[str, Any]:
    return {
        "exit_code": exit_code,
        "signal": signal_number,
        "timed_out": timed_out,
        "stopped": stopped,
        "reason": reason,
        "launch_error": launch_error,  # [errno, strerror, filename]: the parent words it
        "duration": time.monotonic() - started,
        "host": socket.gethostname(),
        "worker": worker,
        "chunks": chunks,  # output messages sent, so the parent knows when it has them all
    }


class _Sender:
    """Output to the parent as worker events on its topic: [kind, token, ...], buffered a
    few milliseconds so a job printing line by line costs few messages."""

    def __init__(self, worker: Any, topic: str, token: str):
        self.worker, self.topic, self.token = worker, topic, token
        self.buffer = bytearray()
        self.first_buffered = 0.0
        self.count = 0

    def message(self, kind: str, *fields: Any) -> None:
        self.worker.log_event(self.topic, [kind, self.token, *fields])

    def output(self, data: bytes) -> None:
        if not self.buffer:
            self.first_buffered = time.monotonic()
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self.flush()

    def flush_due(self) -> float | None:
        """Seconds until the buffer must go out; None when it is empty."""
        if not self.buffer:
            return None
        return max(0.0, self.first_buffered + FLUSH_SECONDS - time.monotonic())

    def flush(self) -> None:
        if self.buffer:
            self.message("out", bytes(self.buffer))
            self.count += 1
            self.buffer.clear()


def _supervise(
    process: subprocess.Popen[bytes], timeout: float | None, grace: float, wake: int, send: _Sender
) -> dict[str, Any]:
    """Read output until the process exits; apply the timeout and stop (TERM, grace, KILL)."""
    assert process.stdout is not None
    pipe = process.stdout.fileno()
    os.set_blocking(pipe, False)
    try:
        exited: int | None = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # before Linux 5.3: look every few milliseconds instead
        exited = None
    selector = selectors.DefaultSelector()
    for fd in (pipe, exited, wake):
        if fd is not None:
            selector.register(fd, selectors.EVENT_READ)
    deadline = None if timeout is None else time.monotonic() + timeout
    kill_at: float | None = None  # after a TERM: when the grace ends
    timed_out = stopped = signalled = False

    def terminate() -> None:
        nonlocal kill_at, signalled
        if not signalled:
            signalled = True
            _signal_group(process.pid, signal.SIGTERM)
            kill_at = time.monotonic() + grace

    def kill() -> None:
        nonlocal kill_at, signalled
        signalled = True
        kill_at = None
        _signal_group(process.pid, signal.SIGKILL)

    try:
        while process.poll() is None:
            timers = [kill_at] if kill_at is not None else [] if signalled or deadline is None else [deadline]
            waits = [when - time.monotonic() for when in timers]
            flush_in = send.flush_due()
            if flush_in is not None:
                waits.append(flush_in)
            if exited is None:
                waits.append(EXIT_POLL_SECONDS)
            for key, _ in selector.select(max(0.0, min(waits)) if waits else None):
                if key.fd == pipe:
                    data = _read(pipe)
                    if data:
                        send.output(data)
                    elif data == b"":
                        selector.unregister(pipe)
                elif key.fd == wake:
                    orders = os.read(wake, 64)
                    stopped = stopped or not timed_out
                    if b"k" in orders:
                        kill()
                    else:
                        terminate()
            now = time.monotonic()
            if deadline is not None and now >= deadline and not signalled:
                timed_out = True
                terminate()
            if kill_at is not None and now >= kill_at:
                kill()
            if send.flush_due() == 0.0:
                send.flush()
        # What is already in the pipe, then stop: a background child still holding the pipe
        # must not keep the attempt alive.
        while data := _read(pipe):
            send.output(data)
    finally:
        selector.close()
        if exited is not None:
            os.close(exited)
        process.stdout.close()
    code = process.returncode
    return {
        "exit_code": code if code >= 0 else None,
        "signal_number": -code if code < 0 else None,
        "timed_out": timed_out,
        "stopped": stopped,
    }


def _read(pipe: int) -> bytes | None:
    """What the pipe holds: b"" at end of file, None when nothing is there yet."""
    try:
        return os.read(pipe, CHUNK)
    except BlockingIOError:
        return None


class _StopWatch:
    """One per worker and run: long-polls the run's stop event and checks that the tasks
    of the attempts it watches are still wanted, waking an attempt's supervisor through its
    pipe with b"s" (stop: TERM, grace, KILL) or b"k" (kill now: the parent cancelled the
    task, went away, or the scheduler did). One thread and one poll per worker, not per
    attempt: a job of `true` must not pay for a thread and a round trip."""

    def __init__(self, worker: Any, stop_name: str):
        from distributed import Event, get_client

        self.worker = worker
        self.stop = Event(stop_name, client=get_client())  # type: ignore[no-untyped-call]
        self.attempts: dict[Any, int] = {}  # task key -> the write end of its wake pipe
        self.stopped = False
        self.ended = False
        thread = threading.Thread(target=self._run, name="orchestrate-stop-watch", daemon=True)
        thread.start()

    @classmethod
    def join(cls, worker: Any, stop_name: str, task_key: Any, wake: int) -> _StopWatch:
        watches, lock = _worker_watches(worker)
        with lock:
            watch = watches.get(stop_name)
            if watch is None or watch.ended:
                watch = watches[stop_name] = cls(worker, stop_name)
            watch.attempts[task_key] = wake
            if watch.stopped:
                _wake(wake, b"s")
            return watch

    def leave(self, task_key: Any) -> None:
        _, lock = _worker_watches(self.worker)
        with lock:
            self.attempts.pop(task_key, None)

    def _run(self) -> None:
        watches, lock = _worker_watches(self.worker)
        idle_polls = 0
        while True:
            order = self._poll()
            with lock:
                for key, wake in list(self.attempts.items()):
                    task = self.worker.state.tasks.get(key)
                    if order == b"k" or task is None or task.state not in ("executing", "long-running"):
                        _wake(wake, b"k")
                        del self.attempts[key]
                    elif order == b"s":
                        _wake(wake, b"s")
                idle_polls = idle_polls + 1 if not self.attempts else 0
                if idle_polls >= 2 or order == b"k":
                    self.ended = True
                    if watches.get(self.stop.name) is self:
                        del watches[self.stop.name]
                    return

    def _poll(self) -> bytes:
        """b"s" when the run was just stopped, b"k" when the scheduler is gone, else b""."""
        if self.stopped:
            time.sleep(STOP_POLL_SECONDS)
            return b""
        try:
            self.stopped = bool(self.stop.wait(timeout=STOP_POLL_SECONDS))  # type: ignore[no-untyped-call]
        except Exception:  # the scheduler is gone: nobody will take these attempts' results
            return b"k"
        return b"s" if self.stopped else b""


def _worker_watches(worker: Any) -> tuple[dict[str, _StopWatch], threading.Lock]:
    """The watches live on the worker: tasks may each carry their own copy of this module."""
    lock = worker.__dict__.setdefault("_orchestrate_watch_lock", threading.Lock())
    return worker.__dict__.setdefault("_orchestrate_watches", {}), lock


def _wake(fd: int, order: bytes) -> None:
    try:
        os.write(fd, order)
    except OSError:
        pass  # the pipe is full of orders already


def _find_program(name: str, env: dict[str, str], cwd: str) -> str:
    """The file exec would run, on the job's own PATH; the OSError exec would give if none.
    (Checked here because the exec is setpriv's; a missing cwd is left to Popen to report.)"""
    if not os.path.isdir(cwd):
        return name
    if "/" not in name:
        found = shutil.which(name, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        return found
    path = os.path.join(cwd, name)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
    return name


@functools.cache
def _die_with_worker() -> tuple[str, ...]:
    """A prefix that SIGKILLs the job if the worker thread that started it dies (a worker
    killed outright) instead of leaving a job nobody watches: util-linux's setpriv, an exec
    costing a millisecond where a preexec_fn would fork the whole worker (about 12 ms)."""
    setpriv = shutil.which("setpriv")
    return (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _kill_leftovers(pgid: int, grace: float) -> None:
    """Processes the job left in its group: TERM now, KILL after the grace, off this thread."""
    if _signal_group(pgid, signal.SIGTERM):
        timer = threading.Timer(grace, _signal_group, (pgid, signal.SIGKILL))
        timer.daemon = True
        timer.start()
