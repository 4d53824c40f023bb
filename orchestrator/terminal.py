"""The terminal: whether to use colour, and the one-line status redrawn in place on a TTY."""

from __future__ import annotations

import os
import shutil

COLOR_MODES = ("auto", "always", "never")
CLEAR_LINE = b"\r\x1b[K"


def is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def color_enabled(mode: str | bool, stream, environ=None) -> bool:
    """`always`/`never` win; `auto` colours a terminal unless NO_COLOR is set (no-color.org)
    or TERM is dumb."""
    if isinstance(mode, bool):
        return mode
    if mode in ("always", "never"):
        return mode == "always"
    environ = os.environ if environ is None else environ
    return is_tty(stream) and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def status_wanted(stream, quiet: bool, parallel_make: bool, environ=None) -> bool:
    """A status line only on a real terminal, not with -q, and not when make may be running
    other recipes beside us (their output would break into our redrawn line)."""
    environ = os.environ if environ is None else environ
    return is_tty(stream) and not quiet and not parallel_make and environ.get("TERM") != "dumb"


class StatusLine:
    """A ninja-style line: `[done/total] N running: a, b …`, cut to the terminal's width."""

    def __init__(self, total: int, width=None):
        self.total = total
        self.done = 0
        self.running: dict[str, None] = {}  # in start order
        self.width = width or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self.shown = b""

    def started(self, name: str) -> None:
        self.running[name] = None

    def finished(self, name: str) -> None:
        self.running.pop(name, None)
        self.done += 1

    def text(self) -> str:
        line = f"[{self.done}/{self.total}] {len(self.running)} running"
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
