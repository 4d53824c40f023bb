"""The choices a run is given on the command line, as enums the rooms compare by identity."""

from __future__ import annotations

import enum


class FailurePolicy(str, enum.Enum):
    """What a failure does to the rest of the run."""

    STOP = "stop"  # start nothing new, let running jobs finish (make's default)
    KEEP_GOING = "keep-going"  # keep starting jobs that do not depend on it (make -k)
    FAIL_FAST = "fail-fast"  # terminate running jobs at once


class OutputMode(str, enum.Enum):
    """How jobs' output reaches the terminal (their logs always get all of it)."""

    GROUPED = "grouped"  # each job's output whole when it ends, never interleaved
    STREAM = "stream"  # live, each line prefixed `[job] `
    FAILED = "failed"  # only failed jobs' output
    NONE = "none"


class ProgressMode(str, enum.Enum):
    """How the run's progress is shown, apart from jobs' output."""

    AUTO = "auto"  # tty on a terminal, lines when CI is set, else none
    TTY = "tty"  # one status line redrawn in place
    LINES = "lines"  # a line on stderr per job start and end, for CI logs
    NONE = "none"


class Schedule(str, enum.Enum):
    """Which ready job starts first when a slot frees."""

    CRITICAL = "critical"  # the longest expected remaining path (schedule.py)
    FILE = "file"  # first ready, first started, as make does


def values(choices: type[enum.Enum]) -> list[str]:
    """The command-line spellings of an enum's members, for argparse `choices`."""
    return [member.value for member in choices]
