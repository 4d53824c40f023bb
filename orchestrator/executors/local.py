"""Runs attempts as child processes of this process, through orchestrator.process."""

from __future__ import annotations

from orchestrator.process import OutputSink, ProcessResult, run_process


class LocalExecutor:
    def __init__(self, kill_grace: float = 5.0):
        self.kill_grace = kill_grace

    def run_attempt(self, job, attempt, env, log_path, stop, on_output) -> ProcessResult:
        log_file = None
        if log_path is not None:
            try:
                log_file = open(log_path, "wb" if attempt == 1 else "ab", buffering=0)
            except OSError as exc:
                return ProcessResult(reason=f"cannot open log {log_path}: {exc.strerror}")
            if attempt > 1:
                log_file.write(f"--- attempt {attempt} ---\n".encode())
        try:
            sink = OutputSink(log_file, on_output)
            return run_process(job.argv, env, job.cwd, sink, job.timeout, self.kill_grace, stop)
        finally:
            if log_file is not None:
                log_file.close()

    def close(self) -> None:
        pass
