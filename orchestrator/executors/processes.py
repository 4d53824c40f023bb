"""`--processes N`: attempts run in N worker processes, each a gevent loop of its own.

The parent keeps the DAG, the gates, the jobserver and the report; it feeds each worker
through a multiprocessing JoinableQueue of its own (so it always knows which worker holds
which attempt) and reads every answer from one result queue in gevent's threadpool, so its
hub never blocks. A worker that dies fails the attempts it held; a new one takes its place.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal

import gevent
import gevent.socket
from gevent.event import AsyncResult

from orchestrator.executors.local import run_attempt_spec, spec_for
from orchestrator.process import ProcessResult, orphans

PR_SET_PDEATHSIG = 1


class _Worker:
    def __init__(self, context, index: int, results, kill_grace: float, run_id: str):
        self.index = index
        self.tasks = context.JoinableQueue()
        self.process = context.Process(target=worker_main, args=(self.tasks, results, kill_grace, run_id),
                                       name=f"orchestrate-worker-{index}", daemon=True)
        self.process.start()
        self.attempts: set[int] = set()


class ProcessPoolExecutor:
    def __init__(self, processes: int, kill_grace: float = 5.0, run_id: str = "", start_method: str = "spawn"):
        self.context = multiprocessing.get_context(start_method)
        self.kill_grace = kill_grace
        self.run_id = run_id
        self.results = self.context.Queue()
        _protect_resource_tracker()
        self.pending: dict[int, AsyncResult] = {}
        self.outputs: dict[int, object] = {}
        self.ids = itertools.count()
        self.closed = False
        self.stop_linked = False
        self.workers = [self._start_worker(index) for index in range(processes)]
        self.reader = gevent.spawn(self._read_results)

    def _start_worker(self, index: int) -> _Worker:
        worker = _Worker(self.context, index, self.results, self.kill_grace, self.run_id)
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
        worker.tasks.put(("run", attempt_id, spec_for(job, attempt, env, log_path), on_output is not None))
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
        self.reader.join(timeout=5)

    # -- parent side --
    def _broadcast(self, message) -> None:
        for worker in self.workers:
            worker.tasks.put(message)

    def _read_results(self) -> None:
        pool = gevent.get_hub().threadpool
        while True:
            message = pool.apply(self.results.get)
            kind = message[0]
            if kind == "closed":
                return
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
def worker_main(tasks, results, kill_grace: float, run_id: str) -> None:
    """A worker: runs the attempts it is sent, each in a greenlet, until told to exit."""
    import gevent.pool
    from gevent.event import Event

    from orchestrator.process import kill_all_leftovers, orphans, seal_inherited_descriptors

    _die_with_parent()
    seal_inherited_descriptors()  # our end of the pipe that tells the parent we died, above all
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    orphans.become_subreaper(run_id)
    stop = Event()
    running: dict[int, gevent.Greenlet] = {}
    group = gevent.pool.Group()

    def leave(*_):
        group.kill(block=True, timeout=kill_grace + 1)
        kill_all_leftovers()
        os._exit(1)

    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(leave))

    def run(attempt_id, spec, want_output):
        on_output = (lambda data: results.put(("output", attempt_id, data))) if want_output else None
        result = ProcessResult(stopped=True, reason="killed")
        try:
            result = run_attempt_spec(spec, stop, on_output, kill_grace)
        finally:
            running.pop(attempt_id, None)
            results.put(("done", attempt_id, result))

    pool = gevent.get_hub().threadpool
    while True:
        message = pool.apply(tasks.get)
        tasks.task_done()
        kind = message[0]
        if kind == "run":
            running[message[1]] = group.spawn(run, *message[1:])
        elif kind == "stop":
            stop.set()
        elif kind == "kill" and message[1] in running:
            running.pop(message[1]).kill(block=False)
        elif kind == "exit":
            break
    group.join()
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
