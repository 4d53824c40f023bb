"""The `run` command as a pipeline: load, select, plan, execute, report."""

from __future__ import annotations

import gc
import os
import sys
from typing import IO, Any

from orchestrator import graph, jobcache, state
from orchestrator.makeflags import parse_makeflags
from orchestrator.model import JobFile
from orchestrator.noop import nothing_to_do
from orchestrator.options import RunRequest
from orchestrator.results import RunSummary


class OutputAbandoned(Exception):
    """The run was stopped and its reader stopped reading: the exit code is all that is left.
    The CLI exits at once, without the interpreter's final flush of a stdout that would
    block forever."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def run(request: RunRequest, stdout: IO[str] | None = None) -> int:
    """Run a job file as the command line asked; return the exit code."""
    stdout = stdout or sys.stdout
    make = parse_makeflags(os.environ.get("MAKEFLAGS"))
    dry_run = request.dry_run or make.dry_run  # `make -n` still runs `+` recipes: it means us too
    jobfile = load_job_file(request, keep=not dry_run)
    names = graph.select(jobfile.jobs, request.targets, request.tags, request.exclude, request.exclude_tags)
    if dry_run:
        resumed = dry_run_resumed(jobfile, names, request)
        order = graph.order(jobfile.jobs, names)
        current = frozenset() if request.force else up_to_date_jobs(jobfile, order, request.state_dir)
        print_dry_run(jobfile, order, stdout, resumed, current)
        return 0
    summary, abandoned = nothing_to_do(jobfile, names, request, make), False
    if summary is None:
        from orchestrator.launch import execute  # gevent and the engine: only when a job runs

        # Start-up is over (cli.main turned the GC off). What it made lives as long as the run,
        # the job file too: frozen, no collection scans it again (100,000 jobs: every full one).
        gc.freeze()
        gc.enable()
        summary, abandoned = execute(jobfile, names, request, make)
    report(summary, request, jobfile, None if abandoned else stdout)
    if abandoned:
        raise OutputAbandoned(summary.exit_code)
    return summary.exit_code


def load_job_file(request: RunRequest, keep: bool = True) -> JobFile:
    """The job file to run: from the run state's cache when nothing it depends on changed
    (jobcache; `keep`: cache a fresh load), else loaded."""
    if request.data is None:
        home = os.path.dirname(os.path.abspath(request.file))
        cache = state.cache_path(state.state_directory(home, request.state_dir), request.file)
        return jobcache.load(request.file, request.variables, cache, keep)
    from orchestrator.loader import load  # read from stdin: run once, as given

    return load(request.file, request.variables, request.data)


def print_dry_run(
    jobfile: JobFile,
    names: list[str],
    stdout: IO[str],
    resumed: frozenset[str] = frozenset(),
    current: frozenset[str] = frozenset(),
) -> None:
    for name in names:
        if name in resumed:
            stdout.write(f"{name}: (resumed)\n")
            continue
        if name in current:
            stdout.write(f"{name}: (up-to-date)\n")
            continue
        job = jobfile.jobs[name]
        command = " ".join(job.run) if isinstance(job.run, tuple) else job.run
        stdout.write(f"{name}: {command}\n")
    stdout.flush()


def explain(jobfile: JobFile, names: list[str], state_dir: str | None = None) -> dict[str, str | None]:
    """Why each job (needs first) would run, or None when it is up to date; reads the state
    without recording a run."""
    from orchestrator import uptodate  # and hashing: only for files that track files
    from orchestrator.hashing import Hasher

    directory = state.state_directory(jobfile.directory, state_dir)
    store: state.StateStore | None = None
    builds: uptodate.BuildStore = uptodate.MemoryStore()  # no state yet: every job never ran
    if os.path.exists(os.path.join(directory, "state.db")):
        store = state.StateStore(directory, jobfile.path, threaded=False)  # no hub to protect
        store.read()
        builds = uptodate.StateBuildStore(store)
    try:
        return uptodate.explain(
            uptodate.Checker(builds, Hasher(builds), jobfile.directory), jobfile.jobs, names
        )
    finally:
        if store is not None:
            store.close()


def up_to_date_jobs(jobfile: JobFile, names: list[str], state_dir: str | None) -> frozenset[str]:
    """The jobs a run would find up to date (for -n)."""
    if not jobfile.tracks_files(names):
        return frozenset()
    return frozenset(name for name, reason in explain(jobfile, names, state_dir).items() if reason is None)


def dry_run_resumed(jobfile: JobFile, names: list[str], request: RunRequest) -> frozenset[str]:
    """What `--resume` would skip, read without recording a run."""
    if not request.resume:
        return frozenset()
    directory = state.state_directory(jobfile.directory, request.state_dir)
    store = state.StateStore(directory, request.file, threaded=False)  # no hub to protect
    try:
        latest = store.read()  # nothing when there is no state.db yet
    finally:
        store.close()
    if not latest:
        return frozenset()
    fingerprints = {name: state.fingerprint(jobfile.jobs[name]) for name in names}
    return state.resumed_jobs(latest, jobfile.jobs, names, fingerprints)


def report(summary: RunSummary, request: RunRequest, jobfile: JobFile, stdout: Any) -> None:
    """Report files, and the table on stdout (None: the reader is gone, files only)."""
    show_table = (
        stdout is not None and request.report == "table" and not (request.quiet and summary.exit_code == 0)
    )
    if not (show_table or request.report_files or request.trace):
        return  # spare importing the report module (and tabulate) when there is nothing to render
    from orchestrator.report import render_table, write_report_file

    run_info = {
        "job_file": os.path.abspath(request.file),
        "run_id": summary.run_id,
        "started": summary.started,
        "exit_code": summary.exit_code,
    }
    needs = {name: job.needs for name, job in jobfile.jobs.items()}  # for the critical path
    for path in request.report_files:
        write_report_file(path, summary, run_info, needs)
    if request.trace:
        from orchestrator.trace import write_trace_file

        write_trace_file(request.trace, summary, run_info, needs)
    if show_table:
        from orchestrator.terminal import color_enabled

        color = color_enabled(request.color, stdout)
        stdout.write(render_table(summary, request.table_format, color=color, needs=needs) + "\n")
        stdout.flush()
