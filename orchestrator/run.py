"""The `run` command as a pipeline: load, select, plan, execute, report."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field

import gevent
from gevent.event import Event

from orchestrator import graph, jobserver, state, terminal
from orchestrator.engine import Engine, EngineOptions
from orchestrator.errors import UsageError
from orchestrator.executors.local import LocalExecutor
from orchestrator.loader import load_for_process
from orchestrator.output import LogStore, Reporter
from orchestrator.process import kill_all_leftovers, orphans, quiet_thread_pool
from orchestrator.results import RunSummary, StopReason

SIGNAL_STOPS = {
    signal.SIGINT: StopReason.SIGINT,
    signal.SIGTERM: StopReason.SIGTERM,
    signal.SIGHUP: StopReason.SIGHUP,
}


@dataclass
class RunRequest:
    file: str
    targets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)  # not run, and done for jobs that need them
    exclude_tags: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # NAME=VALUE words: in every job's env
    data: bytes | None = None  # the job file's contents when read from stdin (file is then "<stdin>")
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
    color: bool | str = "auto"  # auto, always or never (or a decided bool)


def run(request: RunRequest, stdout=None) -> int:
    """Run a job file as the command line asked; return the exit code."""
    stdout = stdout or sys.stdout
    make = jobserver.parse_makeflags(os.environ.get("MAKEFLAGS"))
    jobfile = load_for_process(request.file, request.variables, request.data)
    names = graph.select(jobfile.jobs, request.targets, request.tags, request.exclude, request.exclude_tags)
    if request.dry_run or make.dry_run:  # `make -n` still runs `+` recipes: it means us too
        print_dry_run(jobfile, graph.order(jobfile.jobs, names), stdout)
        return 0
    summary = execute(jobfile, names, request, make)
    report(summary, request, jobfile, stdout)
    return summary.exit_code


def print_dry_run(jobfile, names, stdout) -> None:
    for name in names:
        job = jobfile.jobs[name]
        command = " ".join(job.run) if isinstance(job.run, tuple) else job.run
        stdout.write(f"{name}: {command}\n")
    stdout.flush()


class History:
    """The run's record under .orchestrate/: a JSON line per finished job.

    Lines finished in one turn of the hub go out in one write before the hub waits again,
    so a run killed with SIGKILL loses nothing that finished; fdatasync runs in gevent's
    threadpool at most every SYNC_INTERVAL, so neither the hub nor the disk is hammered."""

    SYNC_INTERVAL = 0.2

    def __init__(self, path: str, start: dict):
        self.writer = state.HistoryWriter(path)
        self.run_id = start["run_id"]
        self.writer.append([start])
        self.pending: list[dict] = []
        self.syncing = None
        self.sync_thread = None  # fdatasync runs there, off the hub
        self.dirty = True
        self.closing = Event()

    def record(self, result) -> None:
        if not self.pending:
            gevent.get_hub().loop.run_callback(self._write)
        self.pending.append(state.job_record(self.run_id, result))

    def _write(self) -> None:
        records, self.pending = self.pending, []
        if records:
            self.writer.append(records)
            self.dirty = True
            if self.syncing is None:
                self.syncing = gevent.spawn(self._sync)

    def _sync(self) -> None:
        while self.dirty:
            self.dirty = False
            if self.sync_thread is None:
                self.sync_thread = quiet_thread_pool(1)
            self.sync_thread.apply(self.writer.sync)
            self.closing.wait(self.SYNC_INTERVAL)
        self.syncing = None

    def close(self) -> None:
        self._write()
        self.closing.set()
        if self.syncing is not None:
            self.syncing.join()
        self.writer.sync()
        self.writer.close()
        if self.sync_thread is not None:
            self.sync_thread.kill()


def resumed_jobs(jobfile, names, request: RunRequest) -> frozenset[str]:
    if not request.resume:
        return frozenset()
    previous = state.read_previous_run(state.history_path(request.file))
    if previous is None:
        return frozenset()
    try:
        return frozenset(state.jobs_to_skip(previous, jobfile.jobs, names))
    except state.ResumeRefused as refused:
        raise UsageError(f"cannot resume {request.file}: {refused}") from None


def execute(jobfile, names, request: RunRequest, make: jobserver.MakeFlags | None = None) -> RunSummary:
    make = make or jobserver.parse_makeflags(os.environ.get("MAKEFLAGS"))
    # First, before the hub opens descriptors that could take the numbers make passed.
    slots = jobserver.job_slots(
        request.jobs, os.cpu_count() or 1, len(names), make, warn=lambda line: print(line, file=sys.stderr)
    )
    try:
        return execute_in(jobfile, names, request, slots, make)
    finally:
        slots.close()


def execute_in(
    jobfile, names, request: RunRequest, slots: jobserver.JobSlots, make: jobserver.MakeFlags
) -> RunSummary:
    resumed = resumed_jobs(jobfile, names, request)
    log_dir = request.log_dir or os.path.join(jobfile.directory, ".orchestrate", "logs")
    output = "failed" if request.quiet and request.output == "grouped" else request.output
    on_tty = terminal.status_wanted(sys.stdout, request.quiet, make.in_parallel_make)
    status = terminal.StatusLine(len(names)) if on_tty else None
    reporter = Reporter(output, status=status)
    options = EngineOptions(
        jobs=slots.pool_size, policy=request.policy, timeout=request.timeout, run_id=uuid.uuid4().hex[:12]
    )
    orphans.become_subreaper(options.run_id)
    base_env = slots.environment(os.environ)
    executor = make_executor(request, options.run_id, slots.pass_fds, base_env)
    history = History(
        state.history_path(request.file), state.start_record(options.run_id, time.time(), jobfile.jobs, names)
    )
    engine = Engine(
        jobfile.jobs,
        names,
        executor,
        reporter,
        options,
        capacities=jobfile.resources,
        log_store=LogStore(log_dir),
        resumed=resumed,
        on_result=history.record,
        base_env=base_env,
        token_gate=slots.gate,
    )
    handlers = [
        gevent.signal_handler(signum, _on_signal, engine, reason, reporter)
        for signum, reason in SIGNAL_STOPS.items()
    ]
    try:
        return engine.run()
    finally:
        for handler in handlers:
            handler.cancel()
        executor.close()
        kill_all_leftovers()
        reporter.close()
        history.close()


def make_executor(request: RunRequest, run_id: str, pass_fds: tuple[int, ...] = (), base_env=None):
    if request.processes > 1:
        from orchestrator.executors.processes import ProcessPoolExecutor

        return ProcessPoolExecutor(
            request.processes, request.kill_grace, run_id, base_env=base_env, pass_fds=pass_fds
        )
    return LocalExecutor(kill_grace=request.kill_grace, pass_fds=pass_fds)


def _on_signal(engine: Engine, reason: StopReason, reporter: Reporter) -> None:
    if engine.stop_event.is_set() and engine.stop_reason in SIGNAL_STOPS.values():
        reporter.message("orchestrate: killing all jobs now")
        engine.kill_now()
        return
    reporter.message(f"orchestrate: {reason.value}: stopping running jobs (again to kill them at once)")
    engine.stop(reason)


def report(summary: RunSummary, request: RunRequest, jobfile, stdout) -> None:
    show_table = request.report == "table" and not (request.quiet and summary.exit_code == 0)
    if not (show_table or request.report_files):
        return  # spare the import of tabulate (40 ms) when there is nothing to render
    from orchestrator.report import render_table, write_report_file

    run_info = {
        "job_file": os.path.abspath(request.file),
        "run_id": summary.run_id,
        "started": summary.started,
        "exit_code": summary.exit_code,
    }
    for path in request.report_files:
        write_report_file(path, summary, run_info)
    if show_table:
        color = terminal.color_enabled(request.color, stdout)
        stdout.write(render_table(summary, request.table_format, color=color) + "\n")
        stdout.flush()
