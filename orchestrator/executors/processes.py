"""`--processes N`: attempts run in N worker processes, each a gevent loop of its own.

The parent keeps the DAG, the gates, the jobserver and the report; it feeds each worker
through a multiprocessing JoinableQueue of its own (so it always knows which worker holds
which attempt) and reads every answer from one result queue. Queues are read by a thread
that hands messages to the hub (QueueBridge), so no hub ever blocks on a queue. A worker
that dies fails the attempts it held; a new one takes its place.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
from collections import deque
from dataclasses import replace

import gevent
import gevent.socket
from gevent.event import AsyncResult

from orchestrator.executors.local import run_attempt_spec, spec_for
from orchestrator.process import ProcessResult, orphans

PR_SET_PDEATHSIG = 1


class QueueBridge:
    """Reads a multiprocessing queue in a thread of its own and hands each message to
    `handle` in the hub: the blocking get never freezes a greenlet, and a burst of messages
    costs the hub one wake-up. The thread ends after a message whose kind is in `last`."""

    def __init__(self, queue, handle, last=("exit",)):
        self.queue, self.handle, self.last = queue, handle, last
        self.inbox: deque = deque()
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
            if message[0] in self.last:
                return

    def _deliver(self) -> None:  # in the hub
        while self.inbox:
            self.handle(self.inbox.popleft())

    def close(self) -> None:
        self.thread.join(timeout=5)
        self._deliver()
        self.watcher.stop()
        self.watcher.close()


class _Worker:
    def __init__(
        self,
        context,
        index: int,
        results,
        kill_grace: float,
        run_id: str,
        base_env: dict,
        pass_fds: tuple[int, ...],
    ):
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
        kill_grace: float = 5.0,
        run_id: str = "",
        start_method: str = "spawn",
        base_env: dict | None = None,
        pass_fds: tuple[int, ...] = (),
    ):
        self.context = multiprocessing.get_context(start_method)
        self.kill_grace = kill_grace
        self.run_id = run_id
        # Workers start with the base environment; each attempt then carries only its own
        # variables, not 40 inherited ones pickled again and again.
        self.base_env = dict(os.environ) if base_env is None else dict(base_env)
        self.pass_fds = pass_fds  # the jobserver's pipe (read, write), reopened by each worker
        self.results = self.context.Queue()
        _protect_resource_tracker()
        self.pending: dict[int, AsyncResult] = {}
        self.outputs: dict[int, object] = {}
        self.ids = itertools.count()
        self.closed = False
        self.stop_linked = False
        self.workers = [self._start_worker(index) for index in range(processes)]
        self.reader = QueueBridge(self.results, self._on_result, last=("closed",))

    def _start_worker(self, index: int) -> _Worker:
        worker = _Worker(
            self.context, index, self.results, self.kill_grace, self.run_id, self.base_env, self.pass_fds
        )
        orphans.protected.add(worker.process.pid)  # ours, not a job's leftover
        gevent.spawn(self._watch, worker)
        return worker

    # -- the Executor interface --
    def run_attempt(self, job, attempt, env, log_path, stop, on_output) -> ProcessResult:
        if not self.stop_linked:
            stop.rawlink(lambda _: self._broadcast(("stop",)))
            self.stop_linked = True
        attempt_id = next(self.ids)
        worker = min(self.workers, key=lambda w: len(w.attempts))
        result = self.pending[attempt_id] = AsyncResult()
        if on_output is not None:
            self.outputs[attempt_id] = on_output
        worker.attempts.add(attempt_id)
        own_env = {name: value for name, value in env.items() if self.base_env.get(name) != value}
        worker.tasks.put(
            ("run", attempt_id, spec_for(job, attempt, own_env, log_path), on_output is not None)
        )
        if stop.is_set():
            worker.tasks.put(("stop",))
        try:
            return result.get()
        except BaseException:  # this runner was killed: kill the attempt at once
            worker.tasks.put(("kill", attempt_id))
            raise
        finally:
            worker.attempts.discard(attempt_id)
            self.pending.pop(attempt_id, None)
            self.outputs.pop(attempt_id, None)

    def close(self) -> None:
        self.closed = True
        self._broadcast(("exit",))
        for worker in self.workers:
            worker.process.join(timeout=self.kill_grace + 5)
            if worker.process.is_alive():
                worker.process.kill()
        self.results.put(("closed",))
        self.reader.close()

    # -- parent side --
    def _broadcast(self, message) -> None:
        for worker in self.workers:
            worker.tasks.put(message)

    def _on_result(self, message) -> None:
        kind = message[0]
        if kind == "output":
            callback = self.outputs.get(message[1])
            if callback is not None:
                callback(message[2])
        elif kind == "done" and message[1] in self.pending:
            self.pending[message[1]].set(message[2])

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
    tasks,
    results,
    kill_grace: float,
    run_id: str,
    base_env: dict,
    parent_pid: int = 0,
    jobserver_fds: tuple[int, ...] = (),
) -> None:
    """A worker: runs the attempts it is sent, each in a greenlet, until told to exit."""
    import gevent.pool
    from gevent.event import Event

    from orchestrator.jobserver import reopen_in_worker
    from orchestrator.process import kill_all_leftovers, orphans, seal_inherited_descriptors

    _die_with_parent()
    seal_inherited_descriptors()  # our end of the pipe that tells the parent we died, above all
    # Nested makes in our jobs share the parent's jobserver, as in one process.
    pass_fds, makeflags = reopen_in_worker(parent_pid, jobserver_fds, base_env.get("MAKEFLAGS"))
    if makeflags is not None:
        base_env = {**base_env, "MAKEFLAGS": makeflags}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    orphans.become_subreaper(run_id)
    stop, done = Event(), Event()
    running: dict[int, gevent.Greenlet] = {}
    group = gevent.pool.Group()

    def leave(*_):
        group.kill(block=True, timeout=kill_grace + 1)
        kill_all_leftovers()
        os._exit(1)

    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(leave))

    def run(attempt_id, spec, want_output):
        on_output = (lambda data: results.put(("output", attempt_id, data))) if want_output else None
        spec = replace(spec, env={**base_env, **spec.env})
        result = ProcessResult(stopped=True, reason="killed")
        try:
            result = run_attempt_spec(spec, stop, on_output, kill_grace, pass_fds)
        finally:
            running.pop(attempt_id, None)
            results.put(("done", attempt_id, result))

    def on_task(message) -> None:  # in the hub, from the bridge
        kind = message[0]
        if kind == "run":
            running[message[1]] = group.spawn(run, *message[1:])
        elif kind == "stop":
            stop.set()
        elif kind == "kill" and message[1] in running:
            running.pop(message[1]).kill(block=False)
        elif kind == "exit":
            done.set()

    bridge = QueueBridge(tasks, on_task)
    done.wait()
    group.join()
    bridge.close()
    kill_all_leftovers()
    results.close()
    results.join_thread()


def _protect_resource_tracker() -> None:
    """multiprocessing's semaphore tracker is a child of ours: the orphan sweep must spare it."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    pid = getattr(resource_tracker._resource_tracker, "_pid", None)
    if pid:
        orphans.protected.add(pid)


def _die_with_parent() -> None:
    """SIGTERM this worker when the parent dies, so it can kill its jobs on the way out."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)
