"""A run with nothing to do: every selected job up to date, decided and recorded without the engine."""

from __future__ import annotations

import os
import sys
import time

from orchestrator import graph, state
from orchestrator.makeflags import MakeFlags
from orchestrator.model import JobFile
from orchestrator.options import ProgressMode, RunRequest
from orchestrator.results import JobResult, RunSummary, Status


def nothing_to_do(
    jobfile: JobFile, names: list[str], request: RunRequest, make: MakeFlags
) -> RunSummary | None:
    """The summary of a run in which every selected job is up to date, recorded in the run
    state as the engine would record it; None when some job must run, or when this cannot be
    told without the engine (then the engine decides job by job, as always).

    Like make's "Nothing to be done", a no-op build should cost little more than reading the
    job file: no gevent, no engine, no thread, one read and one write transaction. The
    jobs' locks are held from the check to the commit, so a run making one of them meanwhile
    is waited for by the engine instead."""
    jobs = jobfile.jobs
    if request.force or request.resume or request.executor != "local" or not names:
        return None
    if not all(jobs[name].outputs for name in names):  # a job without outputs always runs
        return None
    directory = state.state_directory(jobfile.directory, request.state_dir)
    if not os.path.exists(os.path.join(directory, "state.db")):
        return None
    from orchestrator.hashing import Hasher  # only when every job has outputs
    from orchestrator.uptodate import Checker, StateBuildStore

    order = graph.order(jobs, names)  # needs first: a job's check reads its needs' records
    fingerprints = {name: state.fingerprint(jobs[name]) for name in order}
    started, clock = time.time(), time.monotonic()
    try:
        locks = state.JobLocks(None, state.lock_path(directory, request.file), fingerprints, started)
    except OSError:
        return None  # the engine's run state says why
    try:
        if not locks.try_all():
            return None  # another run is making one of them: the engine waits for it
        store = state.StateStore(directory, request.file, threaded=False)
        try:
            store.read()
            if store.broken:
                return None
            builds = StateBuildStore(store)
            checker = Checker(builds, Hasher(builds), jobfile.directory)
            if any(checker.check(jobs[name]).reason is not None for name in order):
                return None
            summary = RunSummary([JobResult(name, Status.UP_TO_DATE, ready=started) for name in names])
            summary.run_id, summary.started = os.urandom(6).hex(), started
            summary.elapsed = time.monotonic() - clock
            store.record_finished_run(
                summary,
                names,
                request.arguments,
                state.result_statements(
                    store.job_file,
                    summary.run_id,
                    {name: i for i, name in enumerate(names)},
                    fingerprints,
                    summary.results,
                    {},
                    state.RecentDurations(store.latest),
                ),
                builds.new_hashes,
            )
        finally:
            store.close()
    finally:
        locks.close()
    _say_progress(summary, request, make)
    return summary


def _say_progress(summary: RunSummary, request: RunRequest, make: MakeFlags) -> None:
    """The lines `--progress lines` (CI) would have shown; a status line has nothing to show."""
    if request.progress is ProgressMode.NONE or (
        request.progress is ProgressMode.AUTO and "CI" not in os.environ
    ):
        return  # auto shows lines only under CI: spare importing the terminal room (4 ms)
    from orchestrator import terminal

    mode = terminal.progress_mode(request.progress, sys.stdout, request.quiet, make.in_parallel_make)
    if mode is ProgressMode.LINES:
        lines = terminal.ProgressLines(len(summary.results), lambda line: print(line, file=sys.stderr))
        for result in summary.results:
            lines.job_finished(result)
        sys.stderr.flush()
