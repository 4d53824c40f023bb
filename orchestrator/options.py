"""The choices a run is given on the command line: enums the rooms compare by identity, and the request."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from orchestrator.model import EMPTY_MAP


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


class RunRequest(NamedTuple):
    """What `orchestrate run` was asked to do. (A NamedTuple: the dataclass cost every start
    ~2.5 ms to define.)"""

    file: str
    targets: Sequence[str] = ()
    tags: Sequence[str] = ()
    exclude: Sequence[str] = ()  # not run, and done for jobs that need them
    exclude_tags: Sequence[str] = ()
    variables: Mapping[str, str] = EMPTY_MAP  # NAME=VALUE words: in every job's env
    data: bytes | None = None  # the job file's contents when read from stdin (file is then "<stdin>")
    jobs: int | None = None
    policy: FailurePolicy = FailurePolicy.STOP
    dry_run: bool = False
    timeout: float | None = None
    kill_grace: float = 5.0
    output: OutputMode = OutputMode.GROUPED
    progress: ProgressMode = ProgressMode.AUTO
    report: str = "table"
    table_format: str = "simple"
    report_files: Sequence[str] = ()
    trace: str | None = None  # a Chrome trace-event file to write
    log_dir: str | None = None
    state_dir: str | None = None  # default .orchestrate beside the job file
    arguments: Sequence[str] = ()  # the command line, for the run's record
    processes: int = 1
    resume: bool = False
    quiet: bool = False
    color: bool | str = "auto"  # auto, always or never (or a decided bool)
    executor: str = "local"  # or dask://HOST:PORT, dask-local:N
    forward_env: Sequence[str] = ()  # caller variables sent to remote jobs
    schedule: Schedule = Schedule.CRITICAL
    force: bool = False  # -B: run jobs even when they are up to date
