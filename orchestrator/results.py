"""Job outcomes as values: the Status enum, JobResult, and the run's exit code."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field
from typing import NamedTuple


class Status(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ALLOWED = "allowed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    RESUMED = "ok (resumed)"  # done in an earlier run; skipped by --resume
    SHARED = "ok (shared)"  # done meanwhile by a concurrent run of the same file
    UP_TO_DATE = "up-to-date"  # its outputs are current: nothing to do

    @property
    def succeeded(self) -> bool:
        """Whether dependents may run after a job ending with this status."""
        return self in (Status.OK, Status.ALLOWED, Status.RESUMED, Status.SHARED, Status.UP_TO_DATE)

    @property
    def reused(self) -> bool:
        """Done in an earlier run and not run in this one: its log is not this run's output."""
        return self in (Status.RESUMED, Status.SHARED, Status.UP_TO_DATE)

    def __str__(self) -> str:
        return self.value


class StopReason(str, enum.Enum):
    """Why a run stopped early; each maps to the exit code the README gives it."""

    TIMEOUT = "timeout"
    SIGINT = "interrupt"
    SIGTERM = "terminate"
    SIGHUP = "hangup"
    FAIL_FAST = "fail-fast"


STOP_EXIT_CODES = {
    StopReason.TIMEOUT: 124,
    StopReason.SIGINT: 130,
    StopReason.SIGTERM: 143,
    StopReason.SIGHUP: 129,
}


class Attempt(NamedTuple):
    """One attempt of a job as it ran: when, in which slot and on which host, how it ended.
    (A NamedTuple: a dataclass cost every start ~1 ms to define.)"""

    number: int
    start: float  # wall-clock epoch seconds
    end: float
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    slot: int | None = None  # the -j slot (0-based) it ran in: a lane of the trace
    host: str | None = None  # where it ran, when not on this machine


@dataclass
class JobResult:
    """What happened to one job; `bool(result)` tells whether it counts as success."""

    name: str
    status: Status
    exit_code: int | None = None
    signal: int | None = None
    attempts: int = 0
    start: float | None = None  # wall-clock epoch seconds
    end: float | None = None
    tail: str = ""  # the last lines of output, for the report
    log_path: str | None = None
    reason: str = ""  # why, in words, when the exit code alone does not say
    timed_out: bool = False  # its last attempt hit the job's timeout
    ready: float | None = None  # when its needs were done (epoch seconds)
    slot: int | None = None  # the slot of its last attempt
    host: str | None = None  # where its last attempt ran, when not on this machine
    tries: list[Attempt] = field(default_factory=list)  # every attempt, in order

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    @property
    def last_line(self) -> str:
        """What the report shows for a job that did not succeed: our reason (a launch or log
        failure, a skip) when there is one, else the last line the job printed."""
        if self.reason:
            return self.reason
        lines = [line for line in self.tail.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def __bool__(self) -> bool:
        return self.status.succeeded


@dataclass
class RunSummary:
    """All results of a run plus why it stopped, reduced to one exit code."""

    results: list[JobResult] = field(default_factory=list)
    stop_reason: StopReason | None = None
    elapsed: float = 0.0
    run_id: str = ""
    started: float | None = None  # wall-clock epoch seconds

    @property
    def exit_code(self) -> int:
        if self.stop_reason in STOP_EXIT_CODES:
            return STOP_EXIT_CODES[self.stop_reason]
        return 0 if all(self.results) else 1

    def counts(self) -> dict[Status, int]:
        counts = {status: 0 for status in Status}
        for result in self.results:
            counts[result.status] += 1
        return {status: n for status, n in counts.items() if n}

    def summary_line(self) -> str:
        parts = [f"{n} {status}" for status, n in self.counts().items()]
        return f"{', '.join(parts) or 'no jobs'} in {self.elapsed:.1f}s"
