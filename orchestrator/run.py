"""The `run` command as a pipeline: load, select, plan, execute, report."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field

import gevent

from orchestrator import graph
from orchestrator.engine import Engine, EngineOptions
from orchestrator.executors.local import LocalExecutor
from orchestrator.loader import load
from orchestrator.output import LogStore, Reporter
from orchestrator.process import kill_all_leftovers
from orchestrator.results import RunSummary, StopReason

SIGNAL_STOPS = {signal.SIGINT: StopReason.SIGINT, signal.SIGTERM: StopReason.SIGTERM, signal.SIGHUP: StopReason.SIGHUP}


@dataclass
class RunRequest:
    file: str
    targets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    jobs: int | None = None
    policy: str = "stop"
    dry_run: bool = False
    timeout: float | None = None
    kill_grace: float = 5.0
    output: str = "grouped"
    report: str = "table"
    table_format: str = "simple"
    report_files: list[str] = field(default_factory=list)
    log_dir: str | None = None
    processes: int = 1
    resume: bool = False
    quiet: bool = False
    color: bool = False


def run(request: RunRequest, stdout=None) -> int:
    """Run a job file as the command line asked; return the exit code."""
    stdout = stdout or sys.stdout
    jobfile = load(request.file)
    names = graph.order(jobfile.jobs, graph.select(jobfile.jobs, request.targets, request.tags))
    if request.dry_run:
        print_dry_run(jobfile, names, stdout)
        return 0
    summary = execute(jobfile, names, request)
    report(summary, request, jobfile, stdout)
    return summary.exit_code


def print_dry_run(jobfile, names, stdout) -> None:
    for name in names:
        job = jobfile.jobs[name]
        command = " ".join(job.run) if isinstance(job.run, tuple) else job.run
        stdout.write(f"{name}: {command}\n")
    stdout.flush()


def execute(jobfile, names, request: RunRequest) -> RunSummary:
    log_dir = request.log_dir or os.path.join(jobfile.directory, ".orchestrate", "logs")
    output = "failed" if request.quiet and request.output == "grouped" else request.output
    reporter = Reporter(output)
    options = EngineOptions(jobs=request.jobs or os.cpu_count() or 1, policy=request.policy, timeout=request.timeout)
    executor = LocalExecutor(kill_grace=request.kill_grace)
    engine = Engine(jobfile.jobs, names, executor, reporter, options, capacities=jobfile.resources,
                    log_store=LogStore(log_dir))
    handlers = [gevent.signal_handler(signum, _on_signal, engine, reason, reporter)
                for signum, reason in SIGNAL_STOPS.items()]
    try:
        return engine.run()
    finally:
        for handler in handlers:
            handler.cancel()
        kill_all_leftovers()
        executor.close()
        reporter.close()


def _on_signal(engine: Engine, reason: StopReason, reporter: Reporter) -> None:
    if engine.stop_event.is_set() and engine.stop_reason in SIGNAL_STOPS.values():
        reporter.message("orchestrate: killing all jobs now")
        engine.kill_now()
        return
    reporter.message(f"orchestrate: {reason.value}: stopping running jobs (again to kill them at once)")
    engine.stop(reason)


def report(summary: RunSummary, request: RunRequest, jobfile, stdout) -> None:
    from orchestrator.report import render_table, write_report_file

    run_info = {"job_file": os.path.abspath(request.file), "run_id": summary.run_id,
                "started": summary.started, "exit_code": summary.exit_code}
    for path in request.report_files:
        write_report_file(path, summary, run_info)
    if request.report == "table" and not (request.quiet and summary.exit_code == 0):
        stdout.write(render_table(summary, request.table_format, color=request.color) + "\n")
        stdout.flush()
