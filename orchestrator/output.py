"""The reporter actor: the only writer to the terminal, so job output never interleaves."""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from typing import IO, Any, NamedTuple

import gevent
from gevent.queue import Queue
from gevent.threadpool import ThreadPool

from orchestrator.listeners import RunListener
from orchestrator.options import OutputMode
from orchestrator.results import JobResult, RunSummary
from orchestrator.terminal import StatusLine
from orchestrator.threads import quiet_thread_pool

COPY_CHUNK = 1 << 20
# After a stopped run (a signal, --timeout, fail-fast), how long the reporter may wait for a
# reader that does not read before it gives up on the rest of the output: the jobs are
# stopped, the logs hold everything, and the process must end with its exit code.
ABANDON_AFTER = 2.0


class _Output(NamedTuple):
    name: str
    data: bytes


class _Finished(NamedTuple):
    result: JobResult


class _Notice(NamedTuple):
    text: str


class _Redraw(NamedTuple):
    """The status line changed: draw it once the inbox is empty."""


class _Close(NamedTuple):
    """Everything sent before this is written: end."""


class Reporter(RunListener):
    """An actor: events become messages in its inbox; only it writes to the terminal.

    `grouped` prints each job's whole output when it ends, in one block, so output of
    parallel jobs never interleaves; `stream` prints lines as they come, prefixed
    `[job] `; `failed` prints only failed jobs' output; `none` prints no job output.
    Jobs not run in this run (resumed) do not replay their old output. Notices about the
    run go to stderr. With `github_groups`, each block is a GitHub Actions log group.
    """

    def __init__(
        self,
        mode: OutputMode | str = OutputMode.GROUPED,
        stream: Any = None,
        status: StatusLine | None = None,
        github_groups: bool = False,
        errors: IO[str] | None = None,
    ) -> None:
        self.mode = OutputMode(mode)
        self.wants_output = self.mode is OutputMode.STREAM
        self.status = status  # redrawn under the output on a TTY
        if status is not None:
            status.on_change = self.redraw
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.errors = errors  # None: sys.stderr as it is when written to
        self.github_groups = github_groups
        self.inbox: Queue[object] = Queue()
        self.partial: dict[str, bytes] = {}
        self.writer: ThreadPool | None = None  # the thread every blocking write goes through
        self.patience: float | None = None  # how long close() waits; None: until all is out
        self.abandoned = False  # close() gave up on a reader that stopped reading
        self.handlers: dict[type, Callable[[Any], None]] = {
            _Output: self._on_output,
            _Finished: self._on_finished,
            _Notice: self._on_notice,
            _Redraw: lambda _: None,  # drawn below, once the inbox is empty
        }
        self.greenlet = gevent.spawn(self._loop)

    # -- the listener: each event only posts a message --
    def job_output(self, name: str, data: bytes) -> None:
        if self.wants_output:
            self.inbox.put(_Output(name, data))

    def job_finished(self, result: JobResult) -> None:
        if self.mode is not OutputMode.NONE:
            self.inbox.put(_Finished(result))

    def notice(self, text: str) -> None:
        self.inbox.put(_Notice(text))

    def redraw(self) -> None:
        self.inbox.put(_Redraw())

    def run_ended(self, summary: RunSummary) -> None:
        if summary.stop_reason is not None:
            self.patience = ABANDON_AFTER

    def close(self) -> None:
        """Wait until everything sent so far is written; after a stopped run, at most
        ABANDON_AFTER seconds (then `abandoned` is set and the rest is dropped)."""
        self.inbox.put(_Close())
        self.greenlet.join(timeout=self.patience)
        if not self.greenlet.dead:
            self.abandoned = True
            self.greenlet.kill(block=False)
            return
        if self.greenlet.exception is not None:
            raise self.greenlet.exception

    # -- the actor --
    def _loop(self) -> None:
        for message in self.inbox:
            if isinstance(message, _Close):
                break
            handler = self.handlers.get(type(message))
            if handler is None:
                raise TypeError(f"reporter: unexpected message {message!r}")
            handler(message)
            if self.status is not None and self.inbox.empty():  # a burst of events: draw once
                self._emit(self.status.redraw())
        if self.status is not None:
            self._emit(self.status.clear())
        self._flush()

    def _on_output(self, message: _Output) -> None:
        pending = self.partial.get(message.name, b"") + message.data
        lines = pending.split(b"\n")
        self.partial[message.name] = lines.pop()
        if lines:
            prefix = f"[{message.name}] ".encode()
            self._write(b"".join(prefix + line + b"\n" for line in lines))

    def _on_finished(self, message: _Finished) -> None:
        result = message.result
        if self.mode is OutputMode.STREAM:
            rest = self.partial.pop(result.name, b"")
            if rest:
                self._write(f"[{result.name}] ".encode() + rest + b"\n")
        elif result.status.reused:
            return  # its log is an earlier run's: not this run's output
        elif self.mode is OutputMode.GROUPED or (self.mode is OutputMode.FAILED and not result):
            self._print_log(result)

    def _on_notice(self, message: _Notice) -> None:
        # Notices about the run itself go to stderr: stdout stays the jobs' output and the table.
        self._emit(message.text + "\n", self.errors or sys.stderr)

    def _print_log(self, result: JobResult) -> None:
        if result.log_path is None or not os.path.exists(result.log_path):
            return
        if self.github_groups:
            header = f"::group::{result.name} ({result.status})\n".encode()
            footer = b"::endgroup::\n"
        else:
            header, footer = f"--- {result.name} ({result.status}) ---\n".encode(), b""
        with open(result.log_path, "rb") as log:
            first = log.read(COPY_CHUNK)
            if not first:
                return
            body = first if first.endswith(b"\n") else first + b"\n"
            # One write for the common small log keeps blocks whole even when other
            # processes (a parallel make) share the terminal.
            if len(first) < COPY_CHUNK:
                self._write(header + body + footer)
                return
            self._write(header + first)
            last = first
            while chunk := log.read(COPY_CHUNK):
                self._write(chunk)
                last = chunk
            self._write((b"" if last.endswith(b"\n") else b"\n") + footer)

    def _write(self, data: bytes) -> None:
        if self.status is not None:
            data = self.status.around(data)
        self._emit(data)

    def _emit(self, data: bytes | str, stream: Any = None) -> None:
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


def _cannot_block(stream: Any) -> bool:
    """A write of up to PIPE_BUF bytes returns at once: a file, or a pipe with that much
    room (what POLLOUT promises). A terminal never counts: stopped, it takes less."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True  # in memory
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(0)) and not os.isatty(fd)


def _write_out(stream: Any, data: bytes | str) -> None:  # in the hub or the writer thread
    try:
        stream.write(data)
        stream.flush()
    except (BrokenPipeError, OSError):
        pass  # the reader went away; the logs still have everything
