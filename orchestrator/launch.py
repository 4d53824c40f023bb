"""A run in the engine: its state and job locks, the up-to-date guard, the listeners, signals."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import NamedTuple

import gevent

from orchestrator import graph, jobserver, state, terminal
from orchestrator.engine import Engine, EngineConfig, JobGuard
from orchestrator.executors import make_executor
from orchestrator.listeners import Fanout, RunListener
from orchestrator.logs import LogStore
from orchestrator.makeflags import MakeFlags, parse_makeflags
from orchestrator.model import JobFile
from orchestrator.options import OutputMode, ProgressMode, RunRequest
from orchestrator.output import Reporter
from orchestrator.recorder import StateRecorder
from orchestrator.results import RunSummary, StopReason
from orchestrator.schedule import Forecast
from orchestrator.supervisor import Supervisor
from orchestrator.threads import quiet_thread_pool

SIGNAL_STOPS = {
    signal.SIGINT: StopReason.SIGINT,
    signal.SIGTERM: StopReason.SIGTERM,
    signal.SIGHUP: StopReason.SIGHUP,
}


class RunState(NamedTuple):
    """The run's state: the store (None without state), its job locks, where logs go, the
    jobs' fingerprints and what --resume skips."""

    store: state.StateStore | None
    locks: state.JobLocks | None
    log_dir: str | None
    fingerprints: dict[str, str]
    resumed: frozenset[str] = frozenset()

    @classmethod
    def open(cls, jobfile: JobFile, request: RunRequest, names: list[str], run_id: str) -> RunState:
        """Open the state beside the job file and record the run. A folder that cannot be
        written: one warning, and a run without state."""
        directory = state.state_directory(jobfile.directory, request.state_dir)
        log_dir = request.log_dir or state.log_directory(directory, request.file)
        fingerprints = {name: state.fingerprint(jobfile.jobs[name]) for name in names}
        try:
            os.makedirs(os.path.dirname(state.lock_path(directory, request.file)), exist_ok=True)
            if request.log_dir is None:
                os.makedirs(log_dir, exist_ok=True)
            locks = state.JobLocks(
                None,
                state.lock_path(directory, request.file),
                fingerprints,
                time.time(),
            )
            state.hold_run(locks, run_id)
        except OSError as error:
            print(
                f"orchestrate: warning: cannot write run state in {directory} ({error.strerror or error}): "
                "running without state",
                file=sys.stderr,
                flush=True,
            )
            return cls(None, None, request.log_dir, fingerprints)
        store = state.StateStore(directory, request.file)
        store.begin(run_id, names, request.arguments, locks.run_start)
        locks.store = store
        resumed: frozenset[str] = frozenset()
        if request.resume:
            resumed = state.resumed_jobs(store.latest, jobfile.jobs, names, fingerprints)
        return cls(store, locks, log_dir, fingerprints, resumed)

    def recorder(self, run_id: str, names: list[str]) -> StateRecorder:
        return StateRecorder(self.store, run_id, names, self.fingerprints, self.locks)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.locks is not None:
            self.locks.close()


@contextmanager
def up_to_date_guard(
    jobfile: JobFile,
    names: list[str],
    request: RunRequest,
    run_state: RunState,
    recorder: StateRecorder,
) -> Iterator[JobGuard | None]:
    """The engine's guard: the run state's job lock, then (once it is held) the up-to-date
    check, which hashes in a thread pool; just the lock when no job has inputs or outputs."""
    if not jobfile.tracks_files(names):
        yield run_state.locks
        return
    from orchestrator.hashing import Hasher
    from orchestrator.uptodate import BuildStore, Checker, MemoryStore, StateBuildStore, UpToDateGuard

    # Without state (a folder that cannot be written) nothing is up to date, but a missing
    # input still fails its job.
    builds: BuildStore = (
        MemoryStore() if run_state.store is None else StateBuildStore(run_state.store, recorder)
    )
    pool = quiet_thread_pool(2)
    try:
        checker = Checker(builds, Hasher(builds, pool.apply), jobfile.directory, request.force)
        yield UpToDateGuard(checker, run_state.locks)
    finally:
        pool.kill()


def execute(
    jobfile: JobFile, names: list[str], request: RunRequest, make: MakeFlags | None = None
) -> tuple[RunSummary, bool]:
    """Run the selected jobs; the summary, and whether the output was abandoned."""
    make = make or parse_makeflags(os.environ.get("MAKEFLAGS"))
    # First, before the hub opens descriptors that could take the numbers make passed.
    slots = jobserver.job_slots(
        request.jobs, os.cpu_count() or 1, len(names), make, warn=lambda line: print(line, file=sys.stderr)
    )
    try:
        return _execute(jobfile, names, request, slots, make)
    finally:
        slots.close()


def _execute(
    jobfile: JobFile,
    names: list[str],
    request: RunRequest,
    slots: jobserver.JobSlots,
    make: MakeFlags,
) -> tuple[RunSummary, bool]:
    run_id = os.urandom(6).hex()
    plan = graph.Plan(jobfile.jobs, names)
    run_state = RunState.open(jobfile, request, plan.names, run_id)
    resumed = run_state.resumed
    supervisor = Supervisor(run_id, request.kill_grace)
    supervisor.become_subreaper()
    base_env = slots.environment(os.environ)
    executor = make_executor(
        request.processes,
        supervisor,
        slots.pass_fds,
        base_env,
        request.executor,
        request.forward_env,
        slots.pool_size,
        jobfile.directory,
    )
    known = run_state.store.expected_durations() if run_state.store is not None else {}

    def forecast() -> Forecast:
        return Forecast.for_plan(plan.names, plan.dependents, known, resumed, slots.pool_size)

    recorder = run_state.recorder(run_id, plan.names)
    reporter, listener = build_listeners(jobfile, names, request, make, recorder, forecast if known else None)
    with up_to_date_guard(jobfile, plan.names, request, run_state, recorder) as guard:
        config = EngineConfig(
            run_id=run_id,
            jobs=slots.pool_size,
            policy=request.policy,
            timeout=request.timeout,
            capacities=jobfile.resources,
            base_env=base_env,
            slots=slots.gate,
            logs=LogStore(run_state.log_dir) if run_state.log_dir is not None else None,
            resumed=resumed,
            job_file=os.path.abspath(request.file),
            schedule=request.schedule,
            expected_durations=known,
            guard=guard,
        )
        engine = Engine(plan, executor, listener, config)
        if run_state.locks is not None:
            run_state.locks.stop = engine.stop_event
            run_state.locks.log_path = engine.log_path
        try:
            with stop_on_signals(engine, listener):
                summary = engine.run()
        finally:
            executor.close()
            supervisor.close()
            listener.close()
    return summary, reporter.abandoned


def build_listeners(
    jobfile: JobFile,
    names: list[str],
    request: RunRequest,
    make: MakeFlags,
    recorder: RunListener | None = None,
    forecast: Callable[[], Forecast] | None = None,
) -> tuple[Reporter, RunListener]:
    """The reporter (the only writer to the terminal) and everything else that observes the
    run, behind one fan-out. `forecast` makes the time left for the status line."""
    output = OutputMode.FAILED if request.quiet and request.output is OutputMode.GROUPED else request.output
    progress = terminal.progress_mode(request.progress, sys.stdout, request.quiet, make.in_parallel_make)
    listeners: list[RunListener] = []
    status = None
    if progress is ProgressMode.TTY:
        time_left = None
        if forecast is not None:
            left = forecast()
            listeners.append(left)
            time_left = partial(_time_left_now, left)
        status = terminal.StatusLine(len(names), time_left=time_left)
    github = os.environ.get("GITHUB_ACTIONS") == "true"
    reporter = Reporter(output, status=status, github_groups=github)
    listeners.insert(0, reporter)
    if status is not None:
        listeners.append(status)
    if progress is ProgressMode.LINES:
        listeners.append(terminal.ProgressLines(len(names), reporter.notice))
    if recorder is not None:
        listeners.append(recorder)  # the run's record in state.db
    return reporter, Fanout(listeners)


def _time_left_now(forecast: Forecast) -> float:
    return forecast.time_left(time.time())  # the engine's events carry time.time()


@contextmanager
def stop_on_signals(engine: Engine, listener: RunListener) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP stop the run (TERM to every job, KILL after grace); the
    same signal again kills every job at once."""

    def on_signal(reason: StopReason) -> None:
        if engine.stop_event.is_set() and engine.stop_reason in SIGNAL_STOPS.values():
            listener.notice("orchestrate: killing all jobs now")
            engine.kill_now()
            return
        listener.notice(f"orchestrate: {reason.value}: stopping running jobs (again to kill them at once)")
        engine.stop(reason)

    handlers = [gevent.signal_handler(signum, on_signal, reason) for signum, reason in SIGNAL_STOPS.items()]
    try:
        yield
    finally:
        for handler in handlers:
            handler.cancel()
