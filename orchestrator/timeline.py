"""A run laid out in time: the critical path, one bar per attempt in its lane, the waits."""

from __future__ import annotations

import heapq
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .results import Attempt, JobResult, RunSummary, Status

# Clocks are read in different places (the engine for `ready`, the executor for `start`):
# a need that "ended" a hair after its dependent became ready still held it up.
CLOCK_SLACK = 0.005

Needs = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Bar:
    """One attempt of a job as drawn: where, when and how it ended."""

    name: str
    attempt: int
    attempts: int  # of the job, so a bar can say "attempt 1 of 3"
    start: float
    end: float
    lane: int  # the -j slot it ran in; attempts the engine gave no slot get lanes after the slots
    status: str  # the job's status on its last attempt, "retried" on the ones before
    exit_code: int | None
    signal_name: str | None
    timed_out: bool
    host: str | None
    critical: bool

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class Wait:
    """A job ready to run but held back by a slot or a resource, from `ready` to its start."""

    name: str
    start: float
    end: float


def critical_path(results: Sequence[JobResult], needs: Needs) -> list[JobResult]:
    """The chain of needs that set the wall time, first job first.

    From the job that ended last, step to the need that ended last before the job became
    ready; stop at a job none of whose needs ran (no needs, or all resumed)."""
    ran = {result.name: result for result in results if result.start is not None and result.end is not None}
    if not ran:
        return []
    job = max(ran.values(), key=_end)
    path = [job]
    seen = {job.name}
    while True:
        became_ready = job.ready if job.ready is not None else _start(job)
        held_by = [
            ran[need]
            for need in needs.get(job.name, ())
            if need in ran and need not in seen and _end(ran[need]) <= became_ready + CLOCK_SLACK
        ]
        if not held_by:
            break
        job = max(held_by, key=_end)
        path.append(job)
        seen.add(job.name)
    path.reverse()
    return path


def path_seconds(path: Iterable[JobResult]) -> float:
    """The time the path's jobs ran (each from its first start to its last end), as bazel
    counts it: what making those jobs faster could take off the wall time."""
    return sum(result.duration or 0.0 for result in path)


def critical_path_line(summary: RunSummary, needs: Needs) -> str | None:
    """`critical path: gen -> build -> test (12.3s of 14.0s)`, or None when the jobs have
    no needs between them (every job is then its own path and the line says nothing)."""
    names = {result.name for result in summary.results}
    if not any(need in names for result in summary.results for need in needs.get(result.name, ())):
        return None
    path = critical_path(summary.results, needs)
    if not path:
        return None
    chain = " -> ".join(result.name for result in path)
    return f"critical path: {chain} ({path_seconds(path):.1f}s of {summary.elapsed:.1f}s)"


def run_origin(summary: RunSummary) -> float:
    """The moment times are measured from: the run's start, else its first event."""
    if summary.started is not None:
        return summary.started
    moments = [t for result in summary.results for t in (result.ready, result.start) if t is not None]
    return min(moments, default=0.0)


def attempts_of(result: JobResult) -> list[Attempt]:
    """The job's attempts; a result without them (an old record) as one attempt spanning it."""
    if result.tries:
        return list(result.tries)
    if result.start is None or result.end is None:
        return []
    return [
        Attempt(
            number=max(1, result.attempts),
            start=result.start,
            end=result.end,
            exit_code=result.exit_code,
            signal=result.signal,
            timed_out=result.timed_out or result.status is Status.TIMEOUT,
            slot=result.slot,
            host=result.host,
        )
    ]


def bars(summary: RunSummary, critical: Iterable[str] = ()) -> list[Bar]:
    """One bar per attempt, in start order; attempts without a slot get lanes of their own."""
    on_path = set(critical)
    laid_out: list[tuple[Attempt, JobResult, bool]] = []
    for result in summary.results:
        tries = attempts_of(result)
        laid_out += [(attempt, result, n == len(tries)) for n, attempt in enumerate(tries, 1)]
    laid_out.sort(key=lambda entry: (entry[0].start, entry[0].end))
    slots = [attempt.slot for attempt, _, _ in laid_out if attempt.slot is not None]
    spare_lanes = _Lanes(first=max(slots, default=-1) + 1)
    drawn = []
    for attempt, result, last in laid_out:
        lane = attempt.slot if attempt.slot is not None else spare_lanes.take(attempt.start, attempt.end)
        drawn.append(
            Bar(
                name=result.name,
                attempt=attempt.number,
                attempts=max(result.attempts, attempt.number),
                start=attempt.start,
                end=max(attempt.start, attempt.end),
                lane=lane,
                status=result.status.value if last else "retried",
                exit_code=attempt.exit_code,
                signal_name=signal_name(attempt.signal),
                timed_out=attempt.timed_out,
                host=attempt.host,
                critical=result.name in on_path,
            )
        )
    return drawn


def waits(summary: RunSummary) -> list[Wait]:
    """Each job's time between becoming ready and its first start, when there was any."""
    found = []
    for result in summary.results:
        tries = attempts_of(result)
        if result.ready is not None and tries and tries[0].start > result.ready:
            found.append(Wait(result.name, result.ready, tries[0].start))
    return sorted(found, key=lambda wait: (wait.start, wait.end))


def lay_out(intervals: Sequence[tuple[float, float]]) -> list[int]:
    """A lane for each (start, end), in order, so that no two in one lane overlap, using as
    few lanes as the busiest moment needs (intervals sorted by start)."""
    lanes = _Lanes(first=0)
    return [lanes.take(start, end) for start, end in intervals]


class _Lanes:
    """Interval partitioning: a lane is free again once its last interval has ended."""

    def __init__(self, first: int) -> None:
        self.next_lane = first
        self.free_at: list[tuple[float, int]] = []  # (end, lane), a heap

    def take(self, start: float, end: float) -> int:
        if self.free_at and self.free_at[0][0] <= start:
            _, lane = heapq.heappop(self.free_at)
        else:
            lane, self.next_lane = self.next_lane, self.next_lane + 1
        heapq.heappush(self.free_at, (max(start, end), lane))
        return lane


def _start(result: JobResult) -> float:
    return result.start if result.start is not None else 0.0


def _end(result: JobResult) -> float:
    return result.end if result.end is not None else 0.0


def signal_name(number: int | None) -> str | None:
    """`SIGTERM` for 15; None for no signal."""
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
