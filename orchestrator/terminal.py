"""The terminal: colour, the status line redrawn in place on a TTY, progress lines for CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.listeners import RunListener
from orchestrator.model import describe_seconds
from orchestrator.options import ProgressMode
from orchestrator.results import JobResult, RunSummary

if TYPE_CHECKING:  # gevent is imported where the ticker starts
    from gevent import Greenlet

COLOR_MODES = ("auto", "always", "never")
CLEAR_LINE = b"\r\x1b[K"
TICK_SECONDS = 1.0  # how often the time left is redrawn while nothing starts or ends


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def color_enabled(mode: str | bool, stream: Any, environ: Mapping[str, str] | None = None) -> bool:
    """`always`/`never` win; `auto` colours a terminal unless NO_COLOR is set (no-color.org)
    or TERM is dumb."""
    if isinstance(mode, bool):
        return mode
    if mode in ("always", "never"):
        return mode == "always"
    environ = os.environ if environ is None else environ
    return is_tty(stream) and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def status_wanted(
    stream: Any, quiet: bool, parallel_make: bool, environ: Mapping[str, str] | None = None
) -> bool:
    """A status line only on a real terminal, not with -q, and not when make may be running
    other recipes beside us (their output would break into our redrawn line)."""
    environ = os.environ if environ is None else environ
    return is_tty(stream) and not quiet and not parallel_make and environ.get("TERM") != "dumb"


def progress_mode(
    asked: ProgressMode,
    stream: Any,
    quiet: bool,
    parallel_make: bool,
    environ: Mapping[str, str] | None = None,
) -> ProgressMode:
    """`auto`: the status line on a terminal (see status_wanted), lines when CI is set (CI
    logs are not terminals and stay silent until a job ends otherwise), else nothing."""
    environ = os.environ if environ is None else environ
    if asked is not ProgressMode.AUTO:
        return asked
    if status_wanted(stream, quiet, parallel_make, environ):
        return ProgressMode.TTY
    if environ.get("CI") and not quiet:
        return ProgressMode.LINES
    return ProgressMode.NONE


class StatusLine(RunListener):
    """A ninja-style line: `[done/total] ~2m left, N running: a, b …` (the time left once
    durations are known from earlier runs), cut to the terminal's width.
    The reporter draws it under the output; `on_change` tells the reporter to redraw.
    With a time left, `on_change` is also called every `tick` seconds from the first job
    start to the run's end, so the time left counts down while one long job runs."""

    def __init__(
        self,
        total: int,
        width: Callable[[], int] | None = None,
        time_left: Callable[[], float] | None = None,
        tick: float = TICK_SECONDS,
    ) -> None:
        self.total = total
        self.time_left = time_left  # expected seconds left, once durations are known
        self.done = 0
        self.running: dict[str, None] = {}  # in start order
        self.width = width or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self.shown = b""
        self.on_change: Callable[[], None] = lambda: None
        self.tick = tick
        self.ticker: Greenlet[..., None] | None = None
        self.ended = False  # the run ended or the listener closed: never tick again

    def started(self, name: str) -> None:
        self.running[name] = None

    def finished(self, name: str) -> None:
        self.running.pop(name, None)
        self.done += 1

    # -- as a run listener --
    def job_started(self, name: str, slot: int, at: float) -> None:
        self.started(name)
        self.on_change()
        if self.time_left is not None and self.ticker is None and not self.ended:
            self.start_ticking()

    def job_finished(self, result: JobResult) -> None:
        self.finished(result.name)
        self.on_change()

    def run_ended(self, summary: RunSummary) -> None:
        self.stop_ticking()

    def close(self) -> None:
        self.stop_ticking()  # the run may have ended without run_ended (an engine error)

    def start_ticking(self) -> None:
        import gevent  # here, not at the top: a run with nothing to start never loads gevent

        self.ticker = gevent.spawn(self._tick)

    @property
    def ticking(self) -> bool:
        return self.ticker is not None and not self.ended

    def stop_ticking(self) -> None:
        # The flag, not the kill alone, ends it at once: a kill that does not block is
        # delivered on a later turn of the hub, after a due tick could still have fired.
        self.ended = True
        if self.ticker is not None:
            self.ticker.kill(block=False)

    def _tick(self) -> None:
        import gevent

        while True:
            gevent.sleep(self.tick)
            if self.ended:
                return
            self.on_change()  # the same path as an event's redraw: a message to the reporter

    def text(self) -> str:
        line = f"[{self.done}/{self.total}]"
        if self.time_left is not None:
            left = describe_seconds(self.time_left())
            if left != "0ms":  # nothing expected ahead: the run is about to end, say nothing
                line += f" ~{left} left,"
        line += f" {len(self.running)} running"
        if self.running:
            line += ": " + ", ".join(self.running)
        width = max(10, self.width() - 1)  # never the last column: some terminals wrap there
        return line if len(line) <= width else line[: width - 1] + "…"

    def redraw(self) -> bytes:
        """The bytes that replace the shown line with the current one (empty if unchanged)."""
        line = self.text().encode("utf-8", "replace")
        if line == self.shown:
            return b""
        self.shown = line
        return CLEAR_LINE + line

    def around(self, data: bytes) -> bytes:
        """`data` printed above the status line: clear it, write, draw it again, in one
        write. After a partial line the status stays away until the line is finished."""
        prefix = CLEAR_LINE if self.shown else b""
        self.shown = self.text().encode("utf-8", "replace") if data.endswith(b"\n") else b""
        return prefix + data + self.shown

    def clear(self) -> bytes:
        shown, self.shown = self.shown, b""
        return CLEAR_LINE if shown else b""


class ProgressLines(RunListener):
    """A line per job start and end, for logs that are not terminals (CI):
    `[3/40] started build`, `[4/40] ok build 2.1s`. `say` writes one line (to stderr,
    through the reporter, so lines never break into job output)."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total = total
        self.say = say
        self.started = 0
        self.finished = 0

    def job_started(self, name: str, slot: int, at: float) -> None:
        self.started += 1
        self.say(f"[{self.started}/{self.total}] started {name}")

    def job_finished(self, result: JobResult) -> None:
        self.finished += 1
        took = f" {describe_seconds(result.duration)}" if result.duration is not None else ""
        self.say(f"[{self.finished}/{self.total}] {result.status} {result.name}{took}")
