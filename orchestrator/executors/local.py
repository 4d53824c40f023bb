"""Runs attempts as child processes of this process, through orchestrator.process."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.output import LogFile
from orchestrator.process import OutputSink, ProcessResult, run_process, seal_inherited_descriptors


@dataclass(frozen=True)
class AttemptSpec:
    """Everything needed to run one attempt, as plain picklable values (for workers too)."""

    argv: tuple[str, ...]
    env: dict
    cwd: str | None
    timeout: float | None
    attempt: int
    log_path: str | None


def spec_for(job, attempt: int, env, log_path) -> AttemptSpec:
    return AttemptSpec(job.argv, env, job.cwd, job.timeout, attempt, log_path)


def run_attempt_spec(spec: AttemptSpec, stop, on_output, kill_grace: float, pass_fds=()) -> ProcessResult:
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
        return run_process(spec.argv, spec.env, spec.cwd, sink, spec.timeout, kill_grace, stop, pass_fds)
    finally:
        if log_file is not None:
            log_file.close()


class LocalExecutor:
    def __init__(self, kill_grace: float = 5.0, pass_fds: tuple[int, ...] = ()):
        self.kill_grace = kill_grace
        self.pass_fds = pass_fds  # every job inherits these (a jobserver's pipe)
        seal_inherited_descriptors(keep=pass_fds)

    def run_attempt(self, job, attempt, env, log_path, stop, on_output) -> ProcessResult:
        return run_attempt_spec(
            spec_for(job, attempt, env, log_path), stop, on_output, self.kill_grace, self.pass_fds
        )

    def close(self) -> None:
        pass
