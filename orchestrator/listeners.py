"""The run-listener seam: what a run tells its observers, and the fan-out to all of them.

The engine knows one listener; the reporter, the status line, the run state and the trace
are listeners behind a Fanout. Every event is called in the hub, in the order things
happen; a listener must not block (one that does I/O hands it to a thread or an actor).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from orchestrator.results import Attempt, JobResult, RunSummary


class RunStart(NamedTuple):
    """A run as it begins: its id, job file, the selected jobs in file order, and when."""

    run_id: str
    job_file: str
    names: tuple[str, ...]
    started: float  # epoch seconds


class RunListener:
    """Every event, doing nothing: a listener overrides the ones it observes.

    `wants_output` says whether it needs every chunk a job prints (costly: only the
    stream output and remote logs do); output reaches only the listeners that want it.
    """

    wants_output: bool = False

    def run_started(self, run: RunStart) -> None:
        """Before the first job is released."""

    def job_ready(self, name: str, at: float) -> None:
        """Every need of `name` is done; it now waits for resources and a slot."""

    def job_started(self, name: str, slot: int, at: float) -> None:
        """`name` got slot `slot` (0-based, a lane that no other running job holds)."""

    def job_output(self, name: str, data: bytes) -> None:
        """A chunk of a running job's merged stdout and stderr (if `wants_output`)."""

    def attempt_ended(self, name: str, attempt: Attempt) -> None:
        """One attempt of `name` ended; a retry may follow."""

    def job_finished(self, result: JobResult) -> None:
        """`name` has its final result: it ran, was skipped, cancelled or resumed."""

    def notice(self, text: str) -> None:
        """A line about the run itself (a signal, the run's timeout), for the user."""

    def run_ended(self, summary: RunSummary) -> None:
        """Every job has its result."""

    def close(self) -> None:
        """After the run: finish what was handed over (writes, commits)."""


class Fanout(RunListener):
    """One listener that hands every event to many, in the order they were given."""

    def __init__(self, listeners: Iterable[RunListener]) -> None:
        self.listeners = list(listeners)
        self.output_listeners = [listener for listener in self.listeners if listener.wants_output]
        self.wants_output = bool(self.output_listeners)

    def run_started(self, run: RunStart) -> None:
        for listener in self.listeners:
            listener.run_started(run)

    def job_ready(self, name: str, at: float) -> None:
        for listener in self.listeners:
            listener.job_ready(name, at)

    def job_started(self, name: str, slot: int, at: float) -> None:
        for listener in self.listeners:
            listener.job_started(name, slot, at)

    def job_output(self, name: str, data: bytes) -> None:
        for listener in self.output_listeners:
            listener.job_output(name, data)

    def attempt_ended(self, name: str, attempt: Attempt) -> None:
        for listener in self.listeners:
            listener.attempt_ended(name, attempt)

    def job_finished(self, result: JobResult) -> None:
        for listener in self.listeners:
            listener.job_finished(result)

    def notice(self, text: str) -> None:
        for listener in self.listeners:
            listener.notice(text)

    def run_ended(self, summary: RunSummary) -> None:
        for listener in self.listeners:
            listener.run_ended(summary)

    def close(self) -> None:
        """Close every listener, even when one fails; the first failure is raised after."""
        failure: BaseException | None = None
        for listener in self.listeners:
            try:
                listener.close()
            except Exception as error:  # the others must still get to finish their writes
                failure = failure or error
        if failure is not None:
            raise failure
