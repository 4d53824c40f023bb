"""The gevent engine: admits ready jobs through the gates, runs them, collects results."""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import gevent
from gevent.event import AsyncResult, Event
from gevent.greenlet import Greenlet
from gevent.pool import Group, Pool
from gevent.queue import Queue

from orchestrator.executors import Executor, job_environment
from orchestrator.gates import ResourceGate
from orchestrator.graph import Plan
from orchestrator.model import Job
from orchestrator.results import JobResult, RunSummary, Status, StopReason


@dataclass
class EngineOptions:
    jobs: int = 1
    policy: str = "stop"  # start nothing new after a failure (make's default)
    timeout: float | None = None  # for the whole run
    run_id: str = ""


class NoTokens:
    """The slot gate when no make jobserver limits us: the -j pool is the only limit."""

    @contextmanager
    def hold(self):
        yield


class JobRunner(Greenlet):
    """One job: its attempts, retries and retry delays, ending in a JobResult value."""

    def __init__(self, engine: Engine, job: Job):
        super().__init__()
        self.engine = engine
        self.job = job
        self.started_at: float | None = None

    def _run(self) -> JobResult:
        engine, job = self.engine, self.job
        log_path = engine.log_path(job.name)
        on_output = (
            (lambda data: engine.reporter.job_output(job.name, data))
            if engine.reporter.wants_output
            else None
        )
        with engine.slots.hold():
            if engine.halted:  # a failure or a stop came while this job waited for a slot
                return JobResult(job.name, Status.CANCELLED)
            self.started_at = time.time()
            return self._attempts(log_path, on_output)

    def _attempts(self, log_path, on_output) -> JobResult:
        engine, job = self.engine, self.job
        engine.reporter.job_started(job.name)
        attempt = 0
        while True:
            attempt += 1
            env = job_environment(job, engine.options.run_id, attempt, engine.base_env)
            outcome = engine.executor.run_attempt(job, attempt, env, log_path, engine.stop_event, on_output)
            if outcome.succeeded or engine.stop_event.is_set() or attempt > job.retries:
                break
            if job.retry_delay and engine.stop_event.wait(job.retry_delay):
                break
        return self._result(outcome, attempt, log_path)

    def _result(self, outcome, attempts: int, log_path) -> JobResult:
        if outcome.succeeded:
            status = Status.OK
        elif outcome.stopped or (
            self.engine.stop_event.is_set() and not outcome.timed_out and outcome.exit_code is None
        ):
            status = Status.INTERRUPTED
        elif outcome.timed_out:
            status = Status.ALLOWED if self.job.allow_failure else Status.TIMEOUT
        else:
            status = Status.ALLOWED if self.job.allow_failure else Status.FAILED
        return JobResult(
            name=self.job.name,
            status=status,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            attempts=attempts,
            start=self.started_at,
            end=time.time(),
            tail=outcome.tail.decode("utf-8", "replace"),
            reason=outcome.reason,
            log_path=log_path if log_path and os.path.exists(log_path) else None,  # silent: no log
        )


class Engine:
    """The dispatch loop: one greenlet that admits ready jobs and records results.

    A ready job waits at the resource gate (all units at once, FIFO), then for a slot in
    the `-j` pool; its JobRunner greenlet then runs it. Every job's result is an
    AsyncResult, set exactly once, whether it ran, was skipped or was cancelled.
    """

    def __init__(
        self,
        jobs: Mapping[str, Job],
        names,
        executor: Executor,
        reporter,
        options: EngineOptions,
        capacities: Mapping[str, int] | None = None,
        log_store=None,
        base_env: Mapping[str, str] | None = None,
        token_gate=None,
        resumed: frozenset[str] = frozenset(),
        on_result=None,
    ):
        self.jobs = jobs
        self.plan = Plan(jobs, names)
        self.executor = executor
        self.reporter = reporter
        self.options = options
        self.options.run_id = options.run_id or uuid.uuid4().hex[:12]
        self.log_store = log_store
        self.base_env = dict(os.environ) if base_env is None else base_env  # decoded once, not per job
        self.gate = ResourceGate(capacities or {})
        self.slots = token_gate or NoTokens()
        self.resumed = resumed  # done in the previous run; not run again
        self.on_result = on_result
        self.pool = Pool(max(1, options.jobs))
        self.admissions = Group()  # greenlets waiting at the resource gate
        self.waiting: deque[Job] = deque()  # jobs with their resources, waiting for a slot
        self.results: dict[str, AsyncResult] = {name: AsyncResult() for name in self.plan.names}
        self.finished: Queue = Queue()
        self.stop_event = Event()
        self.stop_reason: StopReason | None = None
        self.halted = False  # after a failure under the default policy: start nothing new

    def log_path(self, name: str) -> str | None:
        return self.log_store.path(name) if self.log_store is not None else None

    # -- stopping --
    def stop(self, reason: StopReason) -> None:
        """Stop starting jobs and terminate running ones (each process gets TERM, then KILL)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.halted = True
        self.stop_event.set()
        self._cancel_waiting()

    def kill_now(self) -> None:
        """A second interrupt: kill every running job's process group at once."""
        self.stop(self.stop_reason or StopReason.SIGINT)
        self.pool.kill(block=False)

    # -- the dispatch loop --
    def run(self) -> RunSummary:
        started, started_wall = time.monotonic(), time.time()
        timer = (
            gevent.spawn_later(self.options.timeout, self.stop, StopReason.TIMEOUT)
            if self.options.timeout
            else None
        )
        try:
            self._release(self.plan.initially_ready())
            while not self.plan.done:
                name, result = self.finished.get()
                self._record(name, result)
        finally:
            if timer is not None:
                timer.kill()
        summary = RunSummary([self.results[name].get() for name in self.plan.names], self.stop_reason)
        summary.elapsed = time.monotonic() - started
        summary.run_id, summary.started = self.options.run_id, started_wall
        return summary

    def _release(self, names) -> None:
        for name in names:
            if name in self.resumed:
                self.finished.put((name, JobResult(name, Status.RESUMED, log_path=self.log_path(name))))
            elif self.halted:
                self.finished.put((name, self._unstarted(name, Status.CANCELLED)))
            elif self.jobs[name].resources:
                admission = Greenlet(self._admit, self.jobs[name])
                admission.job_name = name  # gevent drops `args` once a greenlet is killed
                admission.link(self._on_admission_done)
                self.admissions.start(admission)
            else:
                self._enqueue(self.jobs[name])

    def _admit(self, job: Job) -> bool:
        """A job that needs resources waits for them here, then queues for a slot."""
        self.gate.acquire(job.resources)
        if self.halted:
            # Granted by the release of a job whose failure halted the run: that wake-up
            # came before the kill _cancel_waiting sent, so this job was never cancelled.
            self.gate.release(job.resources)
            return False
        self._enqueue(job)
        return True

    def _enqueue(self, job: Job) -> None:
        self.waiting.append(job)
        self._pump()

    def _pump(self) -> None:
        """Start waiting jobs, first come first served, while the -j pool has room."""
        while self.waiting and not self.halted and self.pool.free_count():
            self._start_runner(self.waiting.popleft())

    def _start_runner(self, job: Job) -> None:
        runner = JobRunner(self, job)
        # A raw link runs in the hub as the runner ends, before the pool frees its slot, so
        # a failure halts the run before a waiting job can take that slot.
        runner.rawlink(self._on_runner_done)
        self.pool.start(runner)  # never waits: _pump checked for room

    def _cancel_waiting(self) -> None:
        self.admissions.kill(block=False)
        while self.waiting:
            job = self.waiting.popleft()
            self.gate.release(job.resources)
            self.finished.put((job.name, self._unstarted(job.name, Status.CANCELLED)))

    def _on_admission_done(self, admission: Greenlet) -> None:
        # Killed while waiting at a gate, or before it ever ran: the job never started.
        if admission.value is not True:
            self.finished.put((admission.job_name, self._unstarted(admission.job_name, Status.CANCELLED)))

    def _on_runner_done(self, runner: JobRunner) -> None:
        self.gate.release(runner.job.resources)
        if isinstance(runner.value, JobResult):
            result = runner.value
        elif runner.started_at is None:
            result = self._unstarted(runner.job.name, Status.CANCELLED)
        else:
            # Killed (a GreenletExit counts as success in gevent, with the exception as value)
            # or a bug in the runner: either way the job did not finish on its own.
            killed = runner.exception is None
            result = JobResult(
                runner.job.name,
                Status.INTERRUPTED if killed else Status.FAILED,
                start=runner.started_at,
                end=time.time(),
                reason=_describe(runner.exception),
                log_path=self.log_path(runner.job.name),
            )
        self._apply_policy(result)
        self.finished.put((runner.job.name, result))
        gevent.get_hub().loop.run_callback(self._pump)  # once the pool has freed the slot

    def _apply_policy(self, result: JobResult) -> None:
        if result.status in (Status.FAILED, Status.TIMEOUT):
            if self.options.policy == "fail-fast":
                self.stop(StopReason.FAIL_FAST)
            elif self.options.policy == "stop":
                self.halted = True
                self._cancel_waiting()

    def _record(self, name: str, result: JobResult) -> None:
        self._set_result(result)
        ready, skipped = self.plan.finish(name, bool(result))
        for skipped_name in skipped:
            self._set_result(
                self._unstarted(skipped_name, Status.SKIPPED, reason=f"needs {name} ({result.status})")
            )
        self._release(ready)

    def _set_result(self, result: JobResult) -> None:
        self.results[result.name].set(result)
        self.reporter.job_finished(result)
        if self.on_result is not None:
            self.on_result(result)

    def _unstarted(self, name: str, status: Status, reason: str = "") -> JobResult:
        return JobResult(name, status, reason=reason)


def _describe(exception: BaseException | None) -> str:
    if exception is None or isinstance(exception, gevent.GreenletExit):
        return "killed"
    return f"internal error: {type(exception).__name__}: {exception}"
