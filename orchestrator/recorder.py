"""The listener that records a run in the state database as its jobs end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gevent
from gevent.event import Event

from orchestrator.listeners import RunListener
from orchestrator.results import JobResult, RunSummary
from orchestrator.state import JobLocks, RecentDurations, Statements, StateStore, result_statements


class StateRecorder(RunListener):
    """The listener that records each job's result as it ends: the results of one turn of
    the hub go out in one transaction, committed in the store's thread; a job's lock is
    released after its row is committed. `set_detail` attaches a JSON-able dict to a job's
    next record (issue 12: input and output hashes)."""

    def __init__(
        self,
        store: StateStore | None,
        run_id: str,
        names: list[str],
        fingerprints: Mapping[str, str],
        locks: JobLocks | None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.job_file = store.job_file if store is not None else ""
        self.position = {name: i for i, name in enumerate(names)}
        self.fingerprints = fingerprints
        self.locks = locks
        self.pending: list[JobResult] = []
        self.details: dict[str, dict[str, Any]] = {}
        self.durations = RecentDurations(store.latest if store is not None else {})
        self.queue: list[tuple[Statements, list[str]]] = []
        self.writer: gevent.Greenlet[..., None] | None = None
        self.closing = Event()

    def set_detail(self, name: str, detail: dict[str, Any]) -> None:
        self.details[name] = detail

    def job_finished(self, result: JobResult) -> None:
        if not self.pending:
            gevent.get_hub().loop.run_callback(self._flush)
        self.pending.append(result)

    def _flush(self) -> None:
        results, self.pending = self.pending, []
        if not results:
            return
        names = [result.name for result in results]
        if self.store is None or self.store.broken:
            if self.locks is not None:
                self.locks.release(names)
            return
        statements = result_statements(
            self.job_file,
            self.run_id,
            self.position,
            self.fingerprints,
            results,
            self.details,
            self.durations,
        )
        self.queue.append((statements, names))
        if self.writer is None:
            self.writer = gevent.spawn(self._drain)

    COMMIT_GAP = 0.02  # seconds between commits while results keep coming

    def _drain(self) -> None:
        """Commit what is queued, all of it in one transaction, until nothing is left; then
        release those jobs' locks (here in the hub: an unlock in the store's thread fought
        the hub for the GIL). The first result after a pause is committed at once; while
        results keep coming, commits are COMMIT_GAP apart, so the store's thread wakes
        seldom and takes little from the hub."""
        assert self.store is not None
        while self.queue:
            batches, self.queue = self.queue, []
            merged: dict[str, list[tuple[Any, ...]]] = {}
            for batch, _ in batches:
                for statement, rows in batch:
                    merged.setdefault(statement, []).extend(rows)
            statements = [(statement, rows) for statement, rows in merged.items() if rows]
            self.store.write(statements)
            if self.locks is not None:
                self.locks.release([name for _, names in batches for name in names])
            if self.closing.wait(self.COMMIT_GAP):
                continue
        self.writer = None

    def run_ended(self, summary: RunSummary) -> None:
        self._flush()
        if self.store is not None:
            self.store.end(summary)

    def close(self) -> None:
        self._flush()
        self.closing.set()
        if self.writer is not None:
            self.writer.join()
        if self.store is not None:
            self.store.close()
        if self.locks is not None:
            self.locks.close()
