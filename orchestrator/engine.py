"""The gevent engine: admits ready jobs through the gates, runs them, collects results."""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, Protocol

import gevent
from gevent.event import AsyncResult, Event
from gevent.greenlet import Greenlet
from gevent.pool import Group, Pool
from gevent.queue import Queue

from orchestrator.executors import Executor
from orchestrator.gates import ResourceGate
from orchestrator.graph import Plan
from orchestrator.listeners import RunListener, RunStart
from orchestrator.logs import LogStore
from orchestrator.model import EMPTY_MAP, Job, describe_seconds
from orchestrator.options import FailurePolicy, Schedule
from orchestrator.process import ProcessResult
from orchestrator.results import Attempt, JobResult, RunSummary, Status, StopReason
from orchestrator.schedule import ReadyQueue, expected_durations, priorities, ready_queue
from orchestrator.supervisor import job_environment


class SlotGate(Protocol):
    """Job slots beyond the -j pool: make's jobserver tokens (jobserver.TokenGate)."""

    def hold(self) -> AbstractContextManager[None]: ...


class JobGuard(Protocol):
    """Decides, once a job holds its slot, whether it must run at all, and hears how it ended.

    `before` runs in the job's greenlet and may wait cooperatively (a lock another run of
    the same file holds, inputs hashed in a thread); a result it returns is the job's
    (done elsewhere meanwhile, up to date) and nothing runs. Every `before` that returned
    None is followed by `after`, with the job's result, or None when its runner was killed."""

    def before(self, job: Job) -> JobResult | None: ...

    def after(self, job: Job, result: JobResult | None) -> None: ...


class NoTokens:
    """The slot gate when no make jobserver limits us: the -j pool is the only limit."""

    @contextmanager
    def hold(self) -> Iterator[None]:
        yield


class EngineConfig(NamedTuple):
    """How one run is driven; everything but the plan, the executor and the listener. (A
    NamedTuple: a frozen dataclass cost every start ~1.5 ms to define.)"""

    run_id: str
    jobs: int = 1  # the -j pool
    policy: FailurePolicy = FailurePolicy.STOP
    timeout: float | None = None  # for the whole run
    capacities: Mapping[str, int] = EMPTY_MAP  # declared resources
    base_env: Mapping[str, str] | None = None  # the caller's environment; None: os.environ
    slots: SlotGate = NoTokens()  # holds nothing: one for every run
    logs: LogStore | None = None
    resumed: frozenset[str] = frozenset()  # done in an earlier run; not run again
    job_file: str = ""
    schedule: Schedule = Schedule.CRITICAL  # which ready job starts first
    expected_durations: Mapping[str, float] = EMPTY_MAP  # seconds, from earlier runs
    guard: JobGuard | None = None  # the run state's per-job lock and up-to-date check


# gevent's Greenlet is generic only in its stubs (types-gevent), not at run time.
if TYPE_CHECKING:
    _AdmissionBase = Greenlet[..., bool]
    _RunnerBase = Greenlet[..., JobResult]
else:
    _AdmissionBase = _RunnerBase = Greenlet


class Admission(_AdmissionBase):
    """A job waiting at the resource gate; it keeps the job's name, which gevent drops
    with `args` once a greenlet is killed."""

    def __init__(self, admit: Callable[[Job], bool], job: Job) -> None:
        super().__init__(admit, job)
        self.job_name = job.name


class JobRunner(_RunnerBase):
    """One job: its attempts, retries and retry delays, ending in a JobResult value."""

    def __init__(self, engine: Engine, job: Job) -> None:
        super().__init__()  # type: ignore[call-arg]  # a subclass gives _run, not run (gevent's way)
        self.engine = engine
        self.job = job
        self.started_at: float | None = None
        self.slot: int | None = None
        self.tries: list[Attempt] = []

    def _run(self) -> JobResult:
        engine, job = self.engine, self.job
        log_path = engine.log_path(job.name)
        listener = engine.listener
        on_output = partial(listener.job_output, job.name) if listener.wants_output else None
        with engine.config.slots.hold():
            if engine.halted:  # a failure or a stop came while this job waited for a slot
                return engine.unstarted(job.name, Status.CANCELLED)
            guard = engine.config.guard
            if guard is None:
                return self._start(log_path, on_output)
            done = guard.before(job)
            if done is not None:
                done.ready = engine.ready_at.get(job.name)
                return done
            result: JobResult | None = None
            try:
                result = self._start(log_path, on_output)
                return result
            finally:
                guard.after(job, result)

    def _start(self, log_path: str | None, on_output: Callable[[bytes], None] | None) -> JobResult:
        self.slot = self.engine.take_slot()
        self.started_at = time.time()
        self.engine.listener.job_started(self.job.name, self.slot, self.started_at)
        return self._attempts(log_path, on_output)

    def _attempts(self, log_path: str | None, on_output: Callable[[bytes], None] | None) -> JobResult:
        engine, job = self.engine, self.job
        attempt = 0
        while True:
            attempt += 1
            env = job_environment(job, engine.config.run_id, attempt, engine.base_env)
            begun = time.time()
            outcome = engine.executor.run_attempt(job, attempt, env, log_path, engine.stop_event, on_output)
            self._record(attempt, begun, outcome)
            if outcome.succeeded or engine.stop_event.is_set() or attempt > job.retries:
                break
            if job.retry_delay and engine.stop_event.wait(job.retry_delay):
                break
        return self._result(outcome, log_path)

    def _record(self, number: int, begun: float, outcome: ProcessResult) -> None:
        attempt = Attempt(
            number=number,
            start=begun,
            end=time.time(),
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            timed_out=outcome.timed_out,
            slot=self.slot,
            host=outcome.host,
        )
        self.tries.append(attempt)
        self.engine.listener.attempt_ended(self.job.name, attempt)

    def _result(self, outcome: ProcessResult, log_path: str | None) -> JobResult:
        reason = outcome.reason
        stopping = self.engine.stop_event.is_set()
        if outcome.succeeded:
            status = Status.OK
        elif outcome.stopped or (stopping and not outcome.timed_out and outcome.exit_code is None):
            status = Status.INTERRUPTED
        elif outcome.timed_out:
            status = Status.ALLOWED if self.job.allow_failure else Status.TIMEOUT
            if status is Status.ALLOWED:  # `timeout` says it for the others; their last line stays
                reason = reason or f"timed out after {describe_seconds(self.job.timeout or 0)}"
        else:
            status = Status.ALLOWED if self.job.allow_failure else Status.FAILED
        return JobResult(
            name=self.job.name,
            status=status,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            attempts=len(self.tries),
            start=self.started_at,
            end=time.time(),
            tail=outcome.tail.decode("utf-8", "replace"),
            reason=reason,
            timed_out=outcome.timed_out,
            log_path=log_path if log_path and os.path.exists(log_path) else None,  # silent: no log
            ready=self.engine.ready_at.get(self.job.name),
            slot=self.slot,
            host=outcome.host,
            tries=self.tries,
        )


class Engine:
    """The dispatch loop: one greenlet that admits ready jobs and records results.

    A ready job waits at the resource gate (all units at once, FIFO), then for a slot in
    the `-j` pool, where the longest expected remaining path goes first (`--schedule
    file`: the first ready); its JobRunner greenlet then runs it. Every job's result is an
    AsyncResult, set exactly once, whether it ran, was skipped or was cancelled. What
    happens is told to one listener (a Fanout of the reporter, the state, ...).
    """

    def __init__(self, plan: Plan, executor: Executor, listener: RunListener, config: EngineConfig) -> None:
        self.plan = plan
        self.jobs = plan.jobs
        self.executor = executor
        self.listener = listener
        self.config = config
        self.base_env = dict(os.environ) if config.base_env is None else config.base_env  # decoded once
        self.gate = ResourceGate(config.capacities)
        self.pool = Pool(max(1, config.jobs))
        self.admissions = Group()  # greenlets waiting at the resource gate
        self.priority: dict[str, float] = {}
        if config.schedule is Schedule.CRITICAL:
            durations = expected_durations(plan.names, config.expected_durations, config.resumed)
            self.priority = priorities(plan.names, plan.dependents, durations)
        # Jobs with their resources, waiting for a slot.
        self.waiting: ReadyQueue = ready_queue(config.schedule, self.priority, plan.index)
        self.results: dict[str, AsyncResult[JobResult]] = {name: AsyncResult() for name in plan.names}
        self.ready_at: dict[str, float] = {}
        self.finished: Queue[tuple[str, JobResult]] = Queue()
        self.stop_event = Event()
        self.stop_reason: StopReason | None = None
        self.halted = False  # after a failure under the default policy: start nothing new
        self.free_slots: list[int] = []  # a heap: the lowest free lane is taken first
        self.slots_made = 0

    def log_path(self, name: str) -> str | None:
        return self.config.logs.path(name) if self.config.logs is not None else None

    # -- stopping --
    def stop(self, reason: StopReason) -> None:
        """Stop starting jobs and terminate running ones (each process gets TERM, then KILL).
        The first reason stays: it decides the exit code."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.halted = True
        self.stop_event.set()
        self._cancel_waiting()

    def kill_now(self) -> None:
        """A second interrupt: kill every running job's process group at once."""
        self.stop(self.stop_reason or StopReason.SIGINT)
        self.pool.kill(block=False)

    def _time_out(self) -> None:
        timeout = describe_seconds(self.config.timeout or 0)
        running = sum(1 for runner in self.pool if isinstance(runner, JobRunner) and runner.slot is not None)
        jobs = "job" if running == 1 else "jobs"
        self.listener.notice(f"orchestrate: run timed out after {timeout}, stopping {running} running {jobs}")
        self.stop(StopReason.TIMEOUT)

    # -- the dispatch loop --
    def run(self) -> RunSummary:
        started, started_wall = time.monotonic(), time.time()
        self.listener.run_started(
            RunStart(self.config.run_id, self.config.job_file, tuple(self.plan.names), started_wall)
        )
        timeout = self.config.timeout
        timer = gevent.spawn_later(timeout, self._time_out) if timeout else None
        try:
            self._release(self.plan.initially_ready())
            while not self.plan.done:
                name, result = self.finished.get()
                self._record(name, result)
        finally:
            if timer is not None:
                timer.kill()
        summary = RunSummary([self.outcome(name) for name in self.plan.names], self.stop_reason)
        summary.elapsed = time.monotonic() - started
        summary.run_id, summary.started = self.config.run_id, started_wall
        self.listener.run_ended(summary)
        return summary

    def _release(self, names: Iterable[str]) -> None:
        """Queue newly ready jobs, then start the best of them: all are queued before any
        starts, or the first in file order would take the free slots."""
        now = time.time()
        needing: list[str] = []
        for name in names:
            self.ready_at[name] = now
            self.listener.job_ready(name, now)
            if name in self.config.resumed:
                self.finished.put((name, self.unstarted(name, Status.RESUMED, log_path=self.log_path(name))))
            elif self.halted:
                self.finished.put((name, self.unstarted(name, Status.CANCELLED)))
            elif self.jobs[name].resources:
                needing.append(name)
            else:
                self.waiting.push(name)
        if self.priority and len(needing) > 1:
            # The gate serves in arrival order: jobs that arrive together arrive best first.
            needing.sort(key=lambda name: (-self.priority[name], self.plan.index[name]))
        for name in needing:
            if self.gate.try_acquire(self.jobs[name].resources):
                self.waiting.push(name, holding=True)
            else:
                admission = Admission(self._admit, self.jobs[name])
                admission.link(self._on_admission_done)
                self.admissions.start(admission)  # type: ignore[arg-type]  # typeshed: Greenlet[..., object]
        self._pump()

    def _admit(self, job: Job) -> bool:
        """A job whose resources were taken waits for them here, then queues for a slot."""
        self.gate.acquire(job.resources)
        if self.halted:
            # Granted by the release of a job whose failure halted the run: that wake-up
            # came before the kill _cancel_waiting sent, so this job was never cancelled.
            self.gate.release(job.resources)
            return False
        self.waiting.push(job.name, holding=True)
        self._pump()
        return True

    def _pump(self) -> None:
        """Start waiting jobs, the first of the ready queue first, while the -j pool has room."""
        while self.waiting and not self.halted and self.pool.free_count():
            self._start_runner(self.jobs[self.waiting.pop()])

    def _start_runner(self, job: Job) -> None:
        runner = JobRunner(self, job)
        # A raw link runs in the hub as the runner ends, before the pool frees its slot, so
        # a failure halts the run before a waiting job can take that slot.
        runner.rawlink(self._on_runner_done)
        # Never waits: _pump checked for room. (typeshed's Pool.start wants Greenlet[..., object].)
        self.pool.start(runner)  # type: ignore[arg-type]

    def take_slot(self) -> int:
        """The lowest lane no running job holds: trace lanes never overlap."""
        if self.free_slots:
            return heapq.heappop(self.free_slots)
        self.slots_made += 1
        return self.slots_made - 1

    def _cancel_waiting(self) -> None:
        self.admissions.kill(block=False)
        while self.waiting:
            name = self.waiting.pop()
            if self.jobs[name].resources:
                self.gate.release(self.jobs[name].resources)
            self.finished.put((name, self.unstarted(name, Status.CANCELLED)))

    def _on_admission_done(self, admission: Admission) -> None:
        # Killed while waiting at a gate, or before it ever ran: the job never started.
        if admission.value is not True:
            self.finished.put((admission.job_name, self.unstarted(admission.job_name, Status.CANCELLED)))

    def _on_runner_done(self, runner: JobRunner) -> None:
        self.gate.release(runner.job.resources)
        if runner.slot is not None:
            heapq.heappush(self.free_slots, runner.slot)
        if isinstance(runner.value, JobResult):
            result = runner.value
        elif runner.started_at is None:
            result = self.unstarted(runner.job.name, Status.CANCELLED)
        else:
            # Killed (a GreenletExit counts as success in gevent, with the exception as value)
            # or a bug in the runner: either way the job did not finish on its own.
            killed = runner.exception is None
            result = JobResult(
                runner.job.name,
                Status.INTERRUPTED if killed else Status.FAILED,
                attempts=len(runner.tries),
                start=runner.started_at,
                end=time.time(),
                reason=_describe(runner.exception),
                log_path=self.log_path(runner.job.name),
                ready=self.ready_at.get(runner.job.name),
                slot=runner.slot,
                tries=runner.tries,
            )
        self._apply_policy(result)
        self.finished.put((runner.job.name, result))
        gevent.get_hub().loop.run_callback(self._pump)  # once the pool has freed the slot

    def _apply_policy(self, result: JobResult) -> None:
        if result.status in (Status.FAILED, Status.TIMEOUT):
            if self.config.policy is FailurePolicy.FAIL_FAST:
                self.stop(StopReason.FAIL_FAST)
            elif self.config.policy is FailurePolicy.STOP:
                self.halted = True
                self._cancel_waiting()

    def _record(self, name: str, result: JobResult) -> None:
        self._set_result(result)
        ready, skipped = self.plan.finish(name, bool(result))
        for skipped_name in skipped:
            reason = f"needs {name} ({result.status})"
            self._set_result(self.unstarted(skipped_name, Status.SKIPPED, reason=reason))
        self._release(ready)

    def outcome(self, name: str) -> JobResult:
        """The result of a job that has one."""
        result = self.results[name].get(block=False)
        assert result is not None, name
        return result

    def _set_result(self, result: JobResult) -> None:
        self.results[result.name].set(result)
        self.listener.job_finished(result)

    def unstarted(
        self, name: str, status: Status, reason: str = "", log_path: str | None = None
    ) -> JobResult:
        """The result of a job that never ran in this run."""
        return JobResult(name, status, reason=reason, log_path=log_path, ready=self.ready_at.get(name))


def _describe(exception: BaseException | None) -> str:
    if exception is None or isinstance(exception, gevent.GreenletExit):
        return "killed"
    return f"internal error: {type(exception).__name__}: {exception}"
