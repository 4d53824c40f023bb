"""Runs attempts as child processes of this process, through orchestrator.process."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from gevent.event import Event

from orchestrator.logs import LogFile
from orchestrator.model import Job
from orchestrator.process import OutputSink, ProcessResult, run_process, seal_inherited_descriptors
from orchestrator.supervisor import Supervisor


class AttemptSpec(NamedTuple):
    """Everything needed to run one attempt, as plain picklable values (for workers too)."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    timeout: float | None
    attempt: int
    log_path: str | None


def spec_for(
    job: Job, attempt: int, env: Mapping[str, str], log_path: str | None, home: str | None = None
) -> AttemptSpec:
    """`home`: where a job without `cwd` runs (the job file's folder)."""
    return AttemptSpec(job.name, job.argv, dict(env), job.cwd or home, job.timeout, attempt, log_path)


def run_attempt_spec(
    spec: AttemptSpec,
    supervisor: Supervisor,
    stop: Event | None,
    on_output: Callable[[bytes], None] | None,
    pass_fds: tuple[int, ...] = (),
) -> ProcessResult:
    """Open the log (fresh on the first attempt, appended on retries) and run the attempt."""
    log_file = None
    if spec.log_path is not None:
        try:
            log_file = LogFile(spec.log_path, append=spec.attempt > 1)
        except OSError as exc:
            return ProcessResult(reason=f"cannot open log {spec.log_path}: {exc.strerror}")
    sink = OutputSink(log_file, on_output)
    try:
        if spec.attempt > 1:
            sink.write(f"--- attempt {spec.attempt} ---\n".encode())
        return run_process(
            supervisor, spec.name, spec.argv, spec.env, spec.cwd, sink, spec.timeout, stop, pass_fds
        )
    finally:
        if log_file is not None:
            log_file.close()


class LocalExecutor:
    def __init__(
        self, supervisor: Supervisor, pass_fds: tuple[int, ...] = (), home: str | None = None
    ) -> None:
        self.supervisor = supervisor
        self.home = home  # where a job without cwd runs: the job file's folder
        self.pass_fds = pass_fds  # every job inherits these (a jobserver's pipe)
        seal_inherited_descriptors(keep=pass_fds)

    def run_attempt(
        self,
        job: Job,
        attempt: int,
        env: Mapping[str, str],
        log_path: str | None,
        stop: Event,
        on_output: Callable[[bytes], None] | None,
    ) -> ProcessResult:
        spec = spec_for(job, attempt, env, log_path, self.home)
        return run_attempt_spec(spec, self.supervisor, stop, on_output, self.pass_fds)

    def close(self) -> None:
        pass
