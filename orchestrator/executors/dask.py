"""`--executor dask://HOST:PORT` and `dask-local:N`: each attempt runs on a Dask worker.

The parent keeps the DAG, the gates and the report; a worker runs orchestrator.remote for
one attempt. Dask calls us from its own threads (the client's event loop, the future
callback thread): those only append to a deque and `send()` a `hub.loop.async_()` watcher,
never touching a gevent object (gevent #1739); the hub does the rest. Calls that wait on
the scheduler (set an event, cancel a future) go to one thread of ours, so the hub never
blocks on the network.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import AsyncResult, Event

from orchestrator import remote
from orchestrator.errors import UsageError
from orchestrator.logs import LogFile
from orchestrator.model import Job
from orchestrator.process import OutputSink, ProcessResult, launch_error_reason

CONNECT_SECONDS = 3.0
STRAGGLER_SECONDS = 2.0  # after a result: how long output still in transit may take
INSTALL_HINT = "pip install 'orchestrate[dask]'"


@dataclass
class _Attempt:
    """One attempt in flight: where its output goes and how it ends."""

    token: str
    argv: tuple[str, ...]
    cwd: str
    sink: OutputSink
    log_file: LogFile | None
    done: AsyncResult[ProcessResult] = field(default_factory=AsyncResult)
    future: Any = None
    worker: str | None = None  # set when the worker reports the process started
    host: str | None = None
    received: int = 0  # output messages so far
    expected: int | None = None  # output messages the worker sent, known with its result
    final: ProcessResult | None = None  # the result, held back until the output is all in
    stop_sent: bool = False


def parse_target(target: str) -> tuple[str | None, int]:
    """`dask://HOST:PORT` -> (tcp://HOST:PORT, 0); `dask-local:N` -> (None, N). ValueError else."""
    if target.startswith("dask://") and len(target) > len("dask://"):
        return "tcp://" + target[len("dask://") :], 0
    if target.startswith("dask-local:"):
        count = target[len("dask-local:") :]
        if count.isdigit() and int(count) > 0:
            return None, int(count)
    raise ValueError(f"{target!r} is not an executor: use local, dask://HOST:PORT or dask-local:N")


class DaskExecutor:
    def __init__(
        self,
        target: str,
        kill_grace: float = 5.0,
        run_id: str = "",
        forwarded: Mapping[str, str] | None = None,
        slots: int = 1,
        home: str | None = None,
    ):
        address, local_workers = parse_target(target)
        self.kill_grace = kill_grace
        self.run_id = run_id
        self.forwarded = dict(forwarded or {})  # the caller's variables named with --env
        self.cwd = home or os.getcwd()  # where a job without cwd runs (the same path on a worker)
        distributed = _import_distributed()
        self.cluster: Any = None
        if address is None:
            self.cluster = _start_local_cluster(distributed, local_workers, -(-slots // local_workers))
            address = str(self.cluster.scheduler_address)
        self.address = address
        self.client = _connect(distributed, self.address, target)
        self._ship_remote_if_needed()
        self.attempts: dict[str, _Attempt] = {}
        self.ids = itertools.count(1)
        self.stop_name = f"orchestrate-stop-{self.client.id}"  # set once, when the run stops
        self.stop_set = False
        self.stop_linked = False
        self.closed = False
        self.inbox: deque[tuple[Any, ...]] = deque()
        self.watcher = gevent.get_hub().loop.async_()
        self.watcher.start(self._deliver)
        self.calls = ThreadPoolExecutor(1, thread_name_prefix="orchestrate-dask")
        # Our own client id as the topic: the scheduler drops its events when we leave.
        self.topic = self.client.id
        self.client.subscribe_topic(self.topic, self._on_event)
        self.client.subscribe_topic("all", self._on_cluster_event)  # before the list: miss no death
        self.workers: dict[str, dict[str, float]] = {}  # address -> the resources it offers
        try:
            self._update_workers(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception as exc:
            self.close()
            raise UsageError(f"cannot ask the Dask scheduler at {target} for its workers: {exc}") from None
        if not self.workers:
            self.close()
            raise UsageError(f"the Dask scheduler at {target} has no workers; start one with dask worker")

    def _ship_remote_if_needed(self) -> None:
        """Workers need not have orchestrate installed: where any lacks this very
        orchestrator.remote, the module travels with each task (pickled by value, about
        20 KB and a few milliseconds a task); where all have it, by reference."""
        ours = remote.source_digest()
        try:  # fails where a worker cannot import orchestrator.remote to run it
            theirs = self.client.run(remote.source_digest)
        except Exception:
            theirs = {}
        if not theirs or any(digest != ours for digest in theirs.values()):
            import cloudpickle

            cloudpickle.register_pickle_by_value(remote)

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
            stop.rawlink(lambda _: self._stop_all())
            self.stop_linked = True
        missing = self._unmet(job.host_resources)
        if missing:
            return ProcessResult(reason=missing)
        log_file = None
        if log_path is not None:
            try:
                log_file = LogFile(log_path, append=attempt > 1)
            except OSError as exc:
                return ProcessResult(reason=f"cannot open log {log_path}: {exc.strerror}")
        token = f"{self.run_id}-{next(self.ids)}"
        state = _Attempt(token, job.argv, job.cwd or self.cwd, OutputSink(log_file, on_output), log_file)
        if attempt > 1:
            state.sink.write(f"--- attempt {attempt} ---\n".encode())
        self.attempts[token] = state
        try:
            state.future = self.client.submit(
                remote.run_remote,
                self._spec(job, env, state),
                key=f"{job.name}-{token}",
                resources=dict(job.host_resources) or None,
                pure=False,
                retries=0,
            )
            state.future.add_done_callback(lambda future: self._on_done(token, future))
            if stop.is_set():
                self._cancel(state)
            result = state.done.get()
            assert result is not None  # set with a value, never with None
            return result
        except BaseException:  # this runner was killed: kill the remote process at once
            self._cancel(state)
            raise
        finally:
            self._forget(state)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for state in list(self.attempts.values()):
            self._cancel(state)
        if self.stop_set:  # a set event stays on the scheduler until cleared
            self._call(_clear_event, self.client, self.stop_name)
        self.calls.shutdown(wait=True)
        self._close_connections()
        # Stopped, not closed: a Dask thread may still send() to it, harmlessly, until exit.
        self.watcher.stop()

    def _close_connections(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                for topic in (self.topic, "all"):  # else the scheduler writes to a closed comm
                    client.unsubscribe_topic(topic)
            except Exception:
                pass
            try:
                client.close(timeout=CONNECT_SECONDS)
            except Exception:
                pass
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close(timeout=CONNECT_SECONDS)

    # -- what a worker is sent --
    def _spec(self, job: Job, env: Mapping[str, str], state: _Attempt) -> dict[str, Any]:
        """The worker's own environment is the base: send the file's layers, ORCHESTRATE_*
        values and --env names only, never the rest of the caller's environment."""
        own = {name: value for name, value in env.items() if name.startswith("ORCHESTRATE_")}
        remote_env = {**self.forwarded, **job.env, **own}
        return {
            "argv": list(job.argv),
            "env": remote_env,
            "cwd": state.cwd,
            "timeout": job.timeout,
            "kill_grace": self.kill_grace,
            "topic": self.topic,
            "token": state.token,
            "stop": self.stop_name,
        }

    def _unmet(self, wanted: Mapping[str, int]) -> str:
        if not self.workers:
            return "no Dask worker left to run it"
        if wanted and not any(
            all(offered.get(name, 0) >= units for name, units in wanted.items())
            for offered in self.workers.values()
        ):
            asked = ", ".join(f"{name}={units}" for name, units in wanted.items())
            return f"no Dask worker offers host_resources {asked} (dask worker --resources)"
        return ""

    def _update_workers(self, workers: Mapping[str, Any]) -> None:
        for address, info in workers.items():
            self.workers[address] = dict(info.get("resources") or {})

    # -- in Dask's threads: hand over to the hub, touch nothing else --
    def _on_event(self, event: tuple[float, Any]) -> None:
        message = event[1]
        if isinstance(message, (list, tuple)) and message and message[0] in ("out", "start", "end"):
            self.inbox.append(tuple(message))
            self.watcher.send()

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        message = event[1]
        if isinstance(message, dict) and message.get("action") in ("add-worker", "remove-worker"):
            self.inbox.append((message["action"], message.get("worker")))
            self.watcher.send()

    def _on_done(self, token: str, future: Any) -> None:
        """In Dask's callback thread. A task that ran sent its result as an "end" event,
        in order after its output: fetching it again would cost a round trip per attempt."""
        if future.status == "finished":
            self.inbox.append(("finished", token))
        else:
            try:
                value, error = future.result(), ""
            except BaseException as exc:  # cancelled, lost scheduler, or the task raised
                value, error = None, self._failure(exc)
            self.inbox.append(("done", token, value, error))
        self.watcher.send()

    def _fetch_result(self, token: str, future: Any) -> None:  # in our call thread
        try:
            value, error = future.result(), ""
        except BaseException as exc:
            value, error = None, self._failure(exc)
        self.inbox.append(("done", token, value, error))
        self.watcher.send()

    def _failure(self, exc: BaseException) -> str:
        if self.client is None or self.client.status != "running":
            return f"lost the Dask scheduler at {self.address}"
        name = type(exc).__name__
        if name in ("CancelledError", "FutureCancelledError"):
            return "cancelled on the Dask cluster"
        return f"the Dask task failed: {name}: {exc}"

    # -- in the hub --
    def _deliver(self) -> None:
        while self.inbox:
            message = self.inbox.popleft()
            handler = getattr(self, "_handle_" + message[0].replace("-", "_"))
            handler(*message[1:])

    def _handle_out(self, token: str, data: bytes) -> None:
        state = self.attempts.get(token)
        if state is not None:
            state.sink.write(data)
            state.received += 1
            if state.final is not None and state.received >= (state.expected or 0):
                self._finish(state, state.final)

    def _handle_start(self, token: str, worker: str, host: str, pid: int) -> None:
        state = self.attempts.get(token)
        if state is not None:
            state.worker, state.host = worker, host
            if worker not in self.workers:  # it died before we heard it had started
                self._lose(state, worker)

    def _handle_end(self, token: str, value: dict[str, Any]) -> None:
        self._handle_done(token, value, "")

    def _handle_finished(self, token: str) -> None:
        """The task is done; its "end" event should be here or on its way. Should it never
        come, the result is fetched the slow way."""
        state = self.attempts.get(token)
        if state is not None and not state.done.ready() and state.final is None:
            gevent.spawn_later(STRAGGLER_SECONDS, self._fetch_if_missing, state)

    def _fetch_if_missing(self, state: _Attempt) -> None:
        if not state.done.ready() and state.final is None and state.future is not None:
            self._call(self._fetch_result, state.token, state.future)

    def _handle_done(self, token: str, value: dict[str, Any] | None, error: str) -> None:
        state = self.attempts.get(token)
        if state is None or state.done.ready():
            return
        if value is None:
            self._finish(state, ProcessResult(stopped=state.stop_sent, reason=error, host=state.host))
            return
        result = self._result(state, value)
        state.expected = value["chunks"]
        if state.received >= state.expected:
            self._finish(state, result)
        else:  # output sent before the result may still be on its way (a separate channel)
            state.final = result
            gevent.spawn_later(STRAGGLER_SECONDS, self._finish, state, result)

    def _result(self, state: _Attempt, value: dict[str, Any]) -> ProcessResult:
        result = ProcessResult(
            exit_code=value["exit_code"],
            signal=value["signal"],
            timed_out=value["timed_out"],
            stopped=value["stopped"],
            reason=value["reason"],
            host=value["host"],
        )
        if value["launch_error"]:
            number, words, filename = value["launch_error"]
            error = OSError(number, words, filename or None)
            result.exit_code, result.reason = launch_error_reason(error, state.argv, state.cwd)
        if state.sink.error:
            result.reason = state.sink.error
        return result

    def _handle_add_worker(self, address: str | None) -> None:
        if address is not None and address not in self.workers:
            self.workers[address] = {}
            self.calls.submit(self._refresh_workers)  # its resources

    def _refresh_workers(self) -> None:  # in our call thread
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception:
            return
        self.inbox.append(("workers", workers))
        self.watcher.send()

    def _handle_workers(self, workers: Mapping[str, Any]) -> None:
        self._update_workers({address: info for address, info in workers.items() if address in self.workers})

    def _handle_remove_worker(self, address: str | None) -> None:
        self.workers.pop(address or "", None)
        for state in list(self.attempts.values()):
            if state.worker == address or not self.workers:
                self._lose(state, address)

    def _lose(self, state: _Attempt, address: str | None) -> None:
        """Its worker died: fail the attempt now, and keep Dask from running it again."""
        reason = f"worker {address} died" if state.worker == address else "no Dask worker left to run it"
        self._cancel(state)
        state.sink.write(f"--- {reason} ---\n".encode())  # the log says why the output ends here
        self._finish(state, ProcessResult(reason=reason, host=state.host))

    def _finish(self, state: _Attempt, result: ProcessResult) -> None:
        if state.done.ready():
            return
        result.tail = state.sink.tail_text()
        if state.expected is not None and state.received < state.expected:
            state.sink.write(f"--- {state.expected - state.received} output messages lost ---\n".encode())
        state.done.set(result)

    def _stop_all(self) -> None:
        """The run stops: every worker's watch TERMs its attempts; those not started yet are
        cancelled so they never start."""
        if not self.stop_set:
            self.stop_set = True
            self._call(_set_event, self.client, self.stop_name)
        for state in list(self.attempts.values()):
            state.stop_sent = True
            if state.worker is None:
                self._cancel(state)

    def _cancel(self, state: _Attempt) -> None:
        """Release the attempt's task: a worker running it kills the process group at once."""
        state.stop_sent = True
        if state.future is not None:
            self._call(state.future.cancel)

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        try:
            self.calls.submit(_quietly, function, *args)
        except RuntimeError:
            pass  # closing: the client's own close cancels what is left

    def _forget(self, state: _Attempt) -> None:
        self.attempts.pop(state.token, None)
        if state.log_file is not None:
            state.log_file.close()


def _set_event(client: Any, name: str) -> None:
    from distributed import Event as DaskEvent

    DaskEvent(name, client=client).set()  # type: ignore[no-untyped-call]


def _clear_event(client: Any, name: str) -> None:
    from distributed import Event as DaskEvent

    DaskEvent(name, client=client).clear()  # type: ignore[no-untyped-call]


def _quietly(function: Callable[..., Any], *args: Any) -> None:
    try:
        function(*args)
    except Exception:
        pass  # the scheduler is gone: its worker's watcher kills the job on its own


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(f"the dask executor needs distributed: {INSTALL_HINT}") from None
    # Dask logs a lost worker or scheduler with tracebacks, into our report; what matters
    # reaches the user as the attempt's reason (`worker tcp://... died`) instead.
    # Its configuration gives some loggers levels of their own: quiet each one.
    for name in [*logging.root.manager.loggerDict, "distributed"]:
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    return distributed


def _start_local_cluster(distributed: Any, workers: int, threads: int) -> Any:
    """N worker processes sharing the -j slots (a thread waits for each job); no dashboard."""
    try:
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # Its HTTP server starts even without a dashboard, on 8787 unless told otherwise.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.CRITICAL,
        )
    except Exception as exc:
        raise UsageError(f"cannot start a local Dask cluster: {type(exc).__name__}: {exc}") from None


def _connect(distributed: Any, address: str, target: str) -> Any:
    try:
        return distributed.Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except Exception as exc:
        raise UsageError(
            f"cannot reach the Dask scheduler at {target} ({type(exc).__name__}: {exc}); "
            "is `dask scheduler` running there?"
        ) from None
