"""Executors run one attempt of a job; the engine talks to processes only through them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from gevent.event import Event

from orchestrator.model import Job
from orchestrator.process import ProcessResult


class Executor(Protocol):
    def run_attempt(
        self,
        job: Job,
        attempt: int,
        env: Mapping[str, str],
        log_path: str | None,
        stop: Event,
        on_output: Callable[[bytes], None] | None,
    ) -> ProcessResult:
        """Run one attempt to its end (blocking this greenlet only)."""

    def close(self) -> None:
        """Release whatever the executor holds (worker processes)."""


def job_environment(job: Job, run_id: str, attempt: int, base: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment (`base`), then the job's layered env, then ORCHESTRATE_* values."""
    env = dict(base)
    env.update(job.env)
    env["ORCHESTRATE_JOB"] = job.name
    env["ORCHESTRATE_RUN_ID"] = run_id
    env["ORCHESTRATE_ATTEMPT"] = str(attempt)
    return env
