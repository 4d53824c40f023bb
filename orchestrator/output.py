"""Log files and the reporter actor: the only writer to the terminal."""

from __future__ import annotations

import hashlib
import os
import re
import select
import sys

import gevent
from gevent.queue import Queue

from orchestrator.process import quiet_thread_pool
from orchestrator.results import JobResult

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,-]")
COPY_CHUNK = 1 << 20


def log_file_name(job_name: str) -> str:
    """A file name for a job's log: readable, and never a path or a clash."""
    safe = _UNSAFE.sub("_", job_name).strip(".") or "_"
    if safe != job_name:
        safe += "-" + hashlib.sha1(job_name.encode()).hexdigest()[:8]
    return safe + ".log"


class LogFile:
    """A job's log, created at its first byte and written through the raw descriptor: no
    buffering to lose, and every byte written even when the kernel takes a chunk in parts.

    A job that prints nothing gets no file: creating one costs more than launching the job
    (130 us on ext4). An earlier run's log is truncated at the first byte, not removed and
    created again (ext4 then scans for a free inode past the recently deleted ones: 0.6 ms
    a job when 2000 jobs rerun), and removed at the end if the job printed nothing, so it
    is never shown as this run's.
    """

    def __init__(self, path: str, append: bool = False):
        self.path = path
        self.append = append
        self.fd: int | None = None
        self.flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)

    def write(self, data: bytes) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, self.flags, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        elif not self.append:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class LogStore:
    """One log file per job under `directory`, opened for each attempt."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def path(self, job_name: str) -> str:
        return os.path.join(self.directory, log_file_name(job_name))


class Reporter:
    """An actor: the engine sends events to its inbox; only it writes to the terminal.

    `grouped` prints each job's whole output when it ends, in one block, so output of
    parallel jobs never interleaves; `stream` prints lines as they come, prefixed
    `[job] `; `failed` prints only failed jobs' output; `none` prints no job output.
    """

    def __init__(self, mode: str = "grouped", stream=None, status=None):
        self.mode = mode
        self.status = status  # a terminal.StatusLine, redrawn under the output on a TTY
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.inbox: Queue = Queue()
        self.partial: dict[str, bytes] = {}
        self.writer = None  # the thread every write goes through, started at the first
        self.greenlet = gevent.spawn(self._loop)

    # -- the interface the engine talks to (each only posts a message) --
    def job_started(self, name: str) -> None:
        if self.status is not None:  # nothing else to do on a start: spare the actor a wake-up
            self.inbox.put(("started", name))

    def job_output(self, name: str, data: bytes) -> None:
        if self.mode == "stream":
            self.inbox.put(("output", name, data))

    def job_finished(self, result: JobResult) -> None:
        if self.mode != "none" or self.status is not None:
            self.inbox.put(("finished", result))

    def message(self, text: str) -> None:
        self.inbox.put(("message", text))

    def close(self) -> None:
        """Wait until everything sent so far is written."""
        self.inbox.put(("close",))
        self.greenlet.join()

    @property
    def wants_output(self) -> bool:
        return self.mode == "stream"

    # -- the actor --
    def _loop(self) -> None:
        for message in self.inbox:
            kind = message[0]
            if kind == "close":
                break
            getattr(self, "_on_" + kind)(*message[1:])
            if self.status is not None and self.inbox.empty():  # a burst of events: draw once
                self._emit(self.status.redraw())
        if self.status is not None:
            self._emit(self.status.clear())
        self._flush()

    def _on_started(self, name: str) -> None:
        if self.status is not None:
            self.status.started(name)

    def _on_output(self, name: str, data: bytes) -> None:
        pending = self.partial.get(name, b"") + data
        lines = pending.split(b"\n")
        self.partial[name] = lines.pop()
        if lines:
            prefix = f"[{name}] ".encode()
            self._write(b"".join(prefix + line + b"\n" for line in lines))

    def _on_finished(self, result: JobResult) -> None:
        if self.status is not None:
            self.status.finished(result.name)
        if self.mode == "stream":
            rest = self.partial.pop(result.name, b"")
            if rest:
                self._write(f"[{result.name}] ".encode() + rest + b"\n")
        elif self.mode == "grouped" or self.mode == "failed" and not result:
            self._print_log(result)

    def _on_message(self, text: str) -> None:
        # Notices about the run itself go to stderr: stdout stays the jobs' output and the table.
        self._emit(text + "\n", sys.stderr)

    def _print_log(self, result: JobResult) -> None:
        if result.log_path is None or not os.path.exists(result.log_path):
            return
        header = f"--- {result.name} ({result.status}) ---\n".encode()
        with open(result.log_path, "rb") as log:
            first = log.read(COPY_CHUNK)
            if not first:
                return
            body = first if first.endswith(b"\n") else first + b"\n"
            # One write for the common small log keeps blocks whole even when other
            # processes (a parallel make) share the terminal.
            if len(first) < COPY_CHUNK:
                self._write(header + body)
                return
            self._write(header + first)
            last = first
            while chunk := log.read(COPY_CHUNK):
                self._write(chunk)
                last = chunk
            if not last.endswith(b"\n"):
                self._write(b"\n")

    def _write(self, data: bytes) -> None:
        if self.status is not None:
            data = self.status.around(data)
        self._emit(data)

    def _emit(self, data: bytes | str, stream=None) -> None:
        """Write, never letting a reader that stops reading (a pipe nobody drains, a
        terminal stopped with Ctrl-S) hold up the hub that times, reaps and stops jobs: a
        write that cannot block goes out at once, any other through a thread of our own,
        which then holds up only this actor."""
        if not data:
            return
        stream = self.stream if stream is None else stream
        if len(data) <= select.PIPE_BUF and _cannot_block(stream):
            _write_out(stream, data)
            return
        if self.writer is None:
            self.writer = quiet_thread_pool(1)
        self.writer.apply(_write_out, (stream, data))

    def _flush(self) -> None:
        try:
            self.stream.flush()
        except OSError:
            pass
        if self.writer is not None:
            self.writer.kill()


def _cannot_block(stream) -> bool:
    """A write of up to PIPE_BUF bytes returns at once: a file, or a pipe with that much
    room (what POLLOUT promises). A terminal never counts: stopped, it takes less."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True  # in memory
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(0)) and not os.isatty(fd)


def _write_out(stream, data: bytes | str) -> None:  # in the hub or the writer thread
    try:
        stream.write(data)
        stream.flush()
    except (BrokenPipeError, OSError):
        pass  # the reader went away; the logs still have everything
