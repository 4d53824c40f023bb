"""Executors run one attempt of a job; the engine talks to processes only through them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from gevent.event import Event

from orchestrator.model import Job
from orchestrator.process import ProcessResult
from orchestrator.supervisor import Supervisor


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


def make_executor(
    processes: int,
    supervisor: Supervisor,
    pass_fds: tuple[int, ...],
    base_env: Mapping[str, str],
    target: str = "local",
    forward_env: Sequence[str] = (),
    slots: int = 1,
    home: str | None = None,
) -> Executor:
    """Attempts in this process, spread over `processes` worker processes, or on a Dask
    cluster (`target`), which gets only the caller's variables named in `forward_env`.
    A job without `cwd` runs in `home` (the job file's folder; None: this process's)."""
    if target != "local":
        from orchestrator.executors.dask import DaskExecutor

        forwarded = {name: base_env[name] for name in forward_env if name in base_env}
        return DaskExecutor(target, supervisor.kill_grace, supervisor.run_id, forwarded, slots, home)
    if processes > 1:
        from orchestrator.executors.processes import ProcessPoolExecutor

        return ProcessPoolExecutor(processes, supervisor, base_env=base_env, pass_fds=pass_fds, home=home)
    from orchestrator.executors.local import LocalExecutor

    return LocalExecutor(supervisor, pass_fds=pass_fds, home=home)
