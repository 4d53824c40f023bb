"""`--processes N`: attempts run in N worker processes, each a gevent loop of its own.

The parent keeps the DAG, the gates, the jobserver and the report; it feeds each worker
through a multiprocessing JoinableQueue of its own (so it always knows which worker holds
which attempt) and reads every answer from one result queue. Queues are read by a thread
that hands messages to the hub (QueueBridge), so no hub ever blocks on a queue. A worker
that dies fails the attempts it held; a new one takes its place. Each worker builds its
own process supervisor. Messages are typed; an unknown one is an error, never dropped.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import gevent
import gevent.socket
from gevent.event import AsyncResult, Event

from orchestrator.executors.local import AttemptSpec, run_attempt_spec, spec_for
from orchestrator.model import Job
from orchestrator.process import ProcessResult
from orchestrator.supervisor import Supervisor

PR_SET_PDEATHSIG = 1


# -- messages to a worker --
class RunAttempt(NamedTuple):
    attempt_id: int
    spec: AttemptSpec
    want_output: bool


class StopAll(NamedTuple):
    """The run is stopping: every attempt is terminated (TERM, then KILL after grace)."""


class KillAttempt(NamedTuple):
    attempt_id: int


class Exit(NamedTuple):
    """No more work: finish what runs and end."""


# -- messages from workers --
class Output(NamedTuple):
    attempt_id: int
    data: bytes


class Done(NamedTuple):
    attempt_id: int
    result: ProcessResult


class Closed(NamedTuple):
    """The parent's own last message to its reader: every worker has ended."""


class QueueBridge:
    """Reads a multiprocessing queue in a thread of its own and hands each message to
    `handle` in the hub: the blocking get never freezes a greenlet, and a burst of messages
    costs the hub one wake-up. The thread ends after a message of a type in `last`."""

    def __init__(self, queue: Any, handle: Callable[[object], None], last: tuple[type, ...]) -> None:
        self.queue, self.handle, self.last = queue, handle, last
        self.inbox: deque[object] = deque()
        self.watcher = gevent.get_hub().loop.async_()
        self.watcher.start(self._deliver)
        self.thread = threading.Thread(target=self._read, name="orchestrate-queue", daemon=True)
        self.thread.start()

    def _read(self) -> None:  # in the thread: no gevent calls but the thread-safe send()
        while True:
            message = self.queue.get()
            if hasattr(self.queue, "task_done"):
                self.queue.task_done()
            self.inbox.append(message)
            self.watcher.send()
            if isinstance(message, self.last):
                return

    def _deliver(self) -> None:  # in the hub
        while self.inbox:
            self.handle(self.inbox.popleft())

    def close(self) -> None:
        self.thread.join(timeout=5)
        self._deliver()
        self.watcher.stop()
        self.watcher.close()


def dispatch(handlers: Mapping[type, Callable[[Any], None]], message: object) -> None:
    """Hand `message` to the handler of its type; an unknown type is a bug, said aloud."""
    handler = handlers.get(type(message))
    if handler is None:
        raise TypeError(f"unexpected message {message!r}")
    handler(message)


class _Worker:
    def __init__(
        self,
        context: Any,
        index: int,
        results: Any,
        kill_grace: float,
        run_id: str,
        base_env: dict[str, str],
        pass_fds: tuple[int, ...],
    ) -> None:
        self.index = index
        self.tasks = context.JoinableQueue()
        self.process = context.Process(
            target=worker_main,
            args=(self.tasks, results, kill_grace, run_id, base_env, os.getpid(), pass_fds),
            name=f"orchestrate-worker-{index}",
            daemon=True,
        )
        self.process.start()
        self.attempts: set[int] = set()


class ProcessPoolExecutor:
    def __init__(
        self,
        processes: int,
        supervisor: Supervisor,
        start_method: str = "spawn",
        base_env: Mapping[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        home: str | None = None,
    ) -> None:
        self.context = multiprocessing.get_context(start_method)
        self.home = home  # where a job without cwd runs: the job file's folder
        self.supervisor = supervisor
        # Workers start with the base environment; each attempt then carries only its own
        # variables, not 40 inherited ones pickled again and again.
        self.base_env = dict(os.environ) if base_env is None else dict(base_env)
        self.pass_fds = pass_fds  # the jobserver's pipe (read, write), reopened by each worker
        self.results = self.context.Queue()
        _protect_resource_tracker(supervisor)
        self.pending: dict[int, AsyncResult[ProcessResult]] = {}
        self.outputs: dict[int, Callable[[bytes], None]] = {}
        self.ids = itertools.count()
        self.closed = False
        self.stop_linked = False
        self.workers = [self._start_worker(index) for index in range(processes)]
        self.handlers: dict[type, Callable[[Any], None]] = {
            Output: self._on_output,
            Done: self._on_done,
            Closed: lambda _: None,
        }
        self.reader = QueueBridge(self.results, lambda message: dispatch(self.handlers, message), (Closed,))

    def _start_worker(self, index: int) -> _Worker:
        worker = _Worker(
            self.context,
            index,
            self.results,
            self.supervisor.kill_grace,
            self.supervisor.run_id,
            self.base_env,
            self.pass_fds,
        )
        self.supervisor.protect(worker.process.pid)  # ours, not a job's leftover
        gevent.spawn(self._watch, worker)
        return worker

    # -- the Executor interface --
    def run_attempt(
        self,
        job: Job,
        attempt: int,
        env: Mapping[str, str],
        log_path: str | None,
        stop: Event,
        on_output: Callable[[bytes], None] | None,
    ) -> ProcessResult:
        if not self.stop_linked:
            stop.rawlink(lambda _: self._broadcast(StopAll()))
            self.stop_linked = True
        attempt_id = next(self.ids)
        worker = min(self.workers, key=lambda w: len(w.attempts))
        result = self.pending[attempt_id] = AsyncResult()
        if on_output is not None:
            self.outputs[attempt_id] = on_output
        worker.attempts.add(attempt_id)
        own_env = {name: value for name, value in env.items() if self.base_env.get(name) != value}
        worker.tasks.put(
            RunAttempt(
                attempt_id, spec_for(job, attempt, own_env, log_path, self.home), on_output is not None
            )
        )
        if stop.is_set():
            worker.tasks.put(StopAll())
        try:
            outcome = result.get()
            assert outcome is not None  # an AsyncResult set with a value, never with None
            return outcome
        except BaseException:  # this runner was killed: kill the attempt at once
            worker.tasks.put(KillAttempt(attempt_id))
            raise
        finally:
            worker.attempts.discard(attempt_id)
            self.pending.pop(attempt_id, None)
            self.outputs.pop(attempt_id, None)

    def close(self) -> None:
        self.closed = True
        self._broadcast(Exit())
        for worker in self.workers:
            worker.process.join(timeout=self.supervisor.kill_grace + 5)
            if worker.process.is_alive():
                worker.process.kill()
        self.results.put(Closed())
        self.reader.close()

    # -- parent side --
    def _broadcast(self, message: object) -> None:
        for worker in self.workers:
            worker.tasks.put(message)

    def _on_output(self, message: Output) -> None:
        callback = self.outputs.get(message.attempt_id)
        if callback is not None:
            callback(message.data)

    def _on_done(self, message: Done) -> None:
        if message.attempt_id in self.pending:
            self.pending[message.attempt_id].set(message.result)

    def _watch(self, worker: _Worker) -> None:
        gevent.socket.wait_read(worker.process.sentinel)
        worker.process.join()
        if self.closed:
            return
        reason = f"worker process {worker.index} died (exit code {worker.process.exitcode})"
        for attempt_id in list(worker.attempts):
            if attempt_id in self.pending:
                self.pending[attempt_id].set(ProcessResult(reason=reason))
        self.workers[self.workers.index(worker)] = self._start_worker(worker.index)


# -- worker side --
def worker_main(
    tasks: Any,
    results: Any,
    kill_grace: float,
    run_id: str,
    base_env: dict[str, str],
    parent_pid: int = 0,
    jobserver_fds: tuple[int, ...] = (),
) -> None:
    """A worker: runs the attempts it is sent, each in a greenlet, until told to exit."""
    import gevent.pool

    from orchestrator.jobserver import reopen_in_worker
    from orchestrator.process import seal_inherited_descriptors

    _die_with_parent()
    seal_inherited_descriptors()  # our end of the pipe that tells the parent we died, above all
    # Nested makes in our jobs share the parent's jobserver, as in one process.
    pass_fds, makeflags = reopen_in_worker(parent_pid, jobserver_fds, base_env.get("MAKEFLAGS"))
    if makeflags is not None:
        base_env = {**base_env, "MAKEFLAGS": makeflags}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    supervisor = Supervisor(run_id, kill_grace)
    supervisor.become_subreaper()
    stop, done = Event(), Event()
    running: dict[int, gevent.Greenlet[..., None]] = {}
    group = gevent.pool.Group()

    def leave() -> None:
        group.kill(block=True, timeout=kill_grace + 1)
        supervisor.close()
        os._exit(1)

    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(leave))

    def run(message: RunAttempt) -> None:
        attempt_id = message.attempt_id
        on_output = (lambda data: results.put(Output(attempt_id, data))) if message.want_output else None
        spec = message.spec._replace(env={**base_env, **message.spec.env})
        result = ProcessResult(stopped=True, reason="killed")
        try:
            result = run_attempt_spec(spec, supervisor, stop, on_output, pass_fds)
        finally:
            running.pop(attempt_id, None)
            results.put(Done(attempt_id, result))

    def kill(message: KillAttempt) -> None:
        if message.attempt_id in running:
            running.pop(message.attempt_id).kill(block=False)

    handlers: dict[type, Callable[[Any], None]] = {
        RunAttempt: lambda message: running.__setitem__(message.attempt_id, group.spawn(run, message)),
        StopAll: lambda _: stop.set(),
        KillAttempt: kill,
        Exit: lambda _: done.set(),
    }
    bridge = QueueBridge(tasks, lambda message: dispatch(handlers, message), (Exit,))
    done.wait()
    group.join()
    bridge.close()
    supervisor.close()
    results.close()
    results.join_thread()


def _protect_resource_tracker(supervisor: Supervisor) -> None:
    """multiprocessing's semaphore tracker is a child of ours: the orphan sweep must spare it."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    pid = getattr(resource_tracker._resource_tracker, "_pid", None)
    if pid:
        supervisor.protect(pid)


def _die_with_parent() -> None:
    """SIGTERM this worker when the parent dies, so it can kill its jobs on the way out."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)
