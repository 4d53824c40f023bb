"""Critical-path scheduling: expected durations, job priorities, the ready queue, the time left."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from orchestrator.listeners import RunListener
from orchestrator.options import Schedule
from orchestrator.results import JobResult

UNIT = 1.0  # every job's duration when none is known: priorities are then depths (ninja 1.12)


def expected_durations(
    names: Iterable[str], known: Mapping[str, float], resumed: Iterable[str] = ()
) -> dict[str, float]:
    """Each job's expected seconds: its own record, else the median of all records, else 1
    unit; a job `--resume` skips takes none."""
    usable = {name: seconds for name, seconds in known.items() if seconds >= 0 and math.isfinite(seconds)}
    fallback = median(usable.values()) if usable else UNIT
    durations = {name: usable.get(name, fallback) for name in names}
    for name in resumed:
        if name in durations:
            durations[name] = 0.0
    return durations


def median(values: Iterable[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count), as
    statistics.median: importing statistics (fractions, decimal) costs every run 5 ms."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def priorities(
    names: Sequence[str], dependents: Mapping[str, Sequence[str]], durations: Mapping[str, float]
) -> dict[str, float]:
    """Each job's longest expected remaining path: its own duration plus the longest path
    among the jobs that need it. One pass in reverse topological order, O(jobs + needs)
    (ninja #2443: a sort per event instead took 1.9 s on 93k edges). `dependents` holds
    every name, each mapped to the selected jobs that need it."""
    priority: dict[str, float] = {}
    path_of = priority.__getitem__
    for name in reversed(topological_order(names, dependents)):
        after = dependents[name]
        priority[name] = durations[name] + max(map(path_of, after)) if after else durations[name]
    return priority


def topological_order(names: Sequence[str], dependents: Mapping[str, Sequence[str]]) -> Sequence[str]:
    """`names` with every job before the jobs that need it: the file order itself when it
    already is one (needs are mostly written first; checking is 3x cheaper than sorting),
    else Kahn's algorithm."""
    position = {name: i for i, name in enumerate(names)}
    if all(position[after] > i for i, name in enumerate(names) for after in dependents[name]):
        return names
    needs_left = dict.fromkeys(names, 0)
    for name in names:
        for after in dependents[name]:
            needs_left[after] += 1
    order = [name for name in names if needs_left[name] == 0]
    for name in order:  # grows while it is walked
        for after in dependents[name]:
            needs_left[after] -= 1
            if needs_left[after] == 0:
                order.append(after)
    if len(order) != len(names):
        raise ValueError("dependency cycle among the selected jobs")
    return order


class ReadyQueue(Protocol):
    """Jobs that may start, waiting for a slot."""

    def push(self, name: str, holding: bool = False) -> None: ...

    def pop(self) -> str: ...

    def __len__(self) -> int: ...


class CriticalPathQueue:
    """Longest expected remaining path first, equal paths in file order; O(log n) a job.

    A job that already holds resource units (`holding`) goes before the others: its units
    would otherwise sit idle while jobs queued behind it at the resource gate wait, however
    urgent they are (priority inversion). Capacities bound how many jobs can be ahead so."""

    def __init__(self, priority: Mapping[str, float], index: Mapping[str, int]):
        self.priority = priority
        self.index = index
        self.heap: list[tuple[bool, float, int, str]] = []

    def push(self, name: str, holding: bool = False) -> None:
        heapq.heappush(self.heap, (not holding, -self.priority[name], self.index[name], name))

    def pop(self) -> str:
        return heapq.heappop(self.heap)[3]

    def __len__(self) -> int:
        return len(self.heap)


class ArrivalQueue:
    """`--schedule file`: first ready, first started, as make and ninja before 1.12 do."""

    def __init__(self) -> None:
        self.names: deque[str] = deque()

    def push(self, name: str, holding: bool = False) -> None:
        self.names.append(name)

    def pop(self) -> str:
        return self.names.popleft()

    def __len__(self) -> int:
        return len(self.names)


def ready_queue(schedule: Schedule, priority: Mapping[str, float], index: Mapping[str, int]) -> ReadyQueue:
    """The queue a `--schedule` choice asks for."""
    if schedule is Schedule.FILE:
        return ArrivalQueue()
    return CriticalPathQueue(priority, index)


def time_left(remaining_path: float, remaining_work: float, slots: int) -> float:
    """The least time the rest of a run can take: neither its longest remaining chain nor
    its remaining work spread over every slot can finish sooner."""
    return max(remaining_path, remaining_work / max(1, slots), 0.0)


class Forecast(RunListener):
    """The expected time left of a run, from the jobs that are ready, running and finished.

    Every unfinished job is ready, running, or waits on an unfinished need, so the
    longest remaining path starts at a ready or a running job: the top of a heap of ready
    jobs (stale entries dropped lazily) and a scan of the running ones (at most -j)."""

    def __init__(self, durations: Mapping[str, float], priority: Mapping[str, float], slots: int):
        self.durations = durations
        self.priority = priority
        self.slots = slots
        self.unfinished_work = math.fsum(durations.values())
        self.running: dict[str, float] = {}  # name -> when it started
        self.waiting: list[tuple[float, str]] = []  # (-priority, name) of ready jobs, some stale
        self.left_waiting: set[str] = set()  # started or finished: their heap entries are stale

    @classmethod
    def for_plan(
        cls,
        names: Sequence[str],
        dependents: Mapping[str, Sequence[str]],
        known: Mapping[str, float],
        resumed: Iterable[str],
        slots: int,
    ) -> Forecast:
        """A forecast of the selected jobs from the durations known of earlier runs."""
        durations = expected_durations(names, known, resumed)
        return cls(durations, priorities(names, dependents, durations), slots)

    def job_ready(self, name: str, at: float) -> None:
        heapq.heappush(self.waiting, (-self.priority[name], name))

    def job_started(self, name: str, slot: int, at: float) -> None:
        self.left_waiting.add(name)
        self.running[name] = at

    def job_finished(self, result: JobResult) -> None:
        """Ran, skipped, cancelled or resumed: its work is no longer ahead."""
        self.left_waiting.add(result.name)
        self.running.pop(result.name, None)
        self.unfinished_work -= self.durations[result.name]

    def time_left(self, now: float) -> float:
        """Expected seconds until the run ends, `now` on the clock of the events' `at`."""
        while self.waiting and self.waiting[0][1] in self.left_waiting:
            heapq.heappop(self.waiting)
        path = -self.waiting[0][0] if self.waiting else 0.0
        work = self.unfinished_work
        for name, started in self.running.items():
            expected = self.durations[name]
            done = expected - expected_left(expected, now - started)
            path = max(path, self.priority[name] - done)
            work -= done
        return time_left(path, work, self.slots)


OVERRUN_SHARE = 0.1  # of its expected time, what a job running late is still expected to take
OVERRUN_MINIMUM = 1.0  # seconds, or its whole expected time if shorter


def expected_left(expected: float, elapsed: float) -> float:
    """A running job's expected seconds left: it counts down as the job runs, down to a small
    remainder that a late job keeps, since it is still running (the status line would
    otherwise show ~0s left for as long as it overruns)."""
    overrun_left = max(OVERRUN_SHARE * expected, min(expected, OVERRUN_MINIMUM))
    return max(expected - max(elapsed, 0.0), overrun_left)
