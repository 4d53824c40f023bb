"""Whether a job with `outputs` is up to date, or the first reason it must run."""

from __future__ import annotations

import json
import time
from _blake2 import blake2b  # hashlib's own, without OpenSSL (see hashing.py)
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from orchestrator.hashing import Hasher, Snapshot, is_glob
from orchestrator.model import Job
from orchestrator.results import JobResult, Status

if TYPE_CHECKING:  # state imports gevent; the decision logic does not need it
    from orchestrator.engine import JobGuard
    from orchestrator.recorder import StateRecorder
    from orchestrator.state import StateStore


class Record(NamedTuple):
    """How a job's last run on record ended and, after a success, what it was made from."""

    succeeded: bool
    detail: Mapping[str, Any] = MappingProxyType({})  # see Check.detail
    end: float | None = None


class BuildStore(Protocol):
    """What up-to-date checking keeps between runs: file hashes and each job's last record."""

    def cached_hash(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None: ...

    def store_hashes(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None: ...

    def last_record(self, name: str, fresh: bool = False) -> Record | None:
        """The job's record as this run began, or (`fresh`) as committed now."""
        ...

    def record(self, name: str, succeeded: bool, detail: Mapping[str, Any]) -> None: ...


class MemoryStore:
    """A BuildStore in a dict, for tests of the decision logic."""

    def __init__(self) -> None:
        self.hashes: dict[tuple[str, int, int, int], str] = {}
        self.records: dict[str, Record] = {}

    def cached_hash(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None:
        return self.hashes.get((path, size, mtime_ns, inode))

    def store_hashes(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None:
        for path, size, mtime_ns, inode, digest in rows:
            self.hashes[(path, size, mtime_ns, inode)] = digest

    def last_record(self, name: str, fresh: bool = False) -> Record | None:
        return self.records.get(name)

    def record(self, name: str, succeeded: bool, detail: Mapping[str, Any]) -> None:
        self.records[name] = Record(succeeded, dict(detail), time.time())


# The statuses after which a job's outputs are as its last success left them.
_MADE = frozenset((Status.OK.value, Status.UP_TO_DATE.value, Status.SHARED.value, Status.RESUMED.value))


class StateBuildStore:
    """The BuildStore over the run state database (state.StateStore): hashes in its
    file_hashes table, a job's input and output hashes as the `detail` of its success,
    attached through the run's StateRecorder. Without a recorder (explain, -n) it reads only.

    Records and hashes are read once, as the run begins (a thread round trip per file cost
    a no-op run of 1,000 jobs 4 s); a job that would run is checked again against its record
    as committed now (`fresh`): another run of the file may have made it meanwhile."""

    def __init__(self, store: StateStore, recorder: StateRecorder | None = None) -> None:
        self.store = store
        self.recorder = recorder
        self.made: dict[str, Record] = {}  # successes of this run, before their commit
        self.hashes = store.all_hashes(forget_missing=recorder is not None)
        self.new_hashes: list[tuple[str, int, int, int, str]] = []  # hashed, not yet stored

    def cached_hash(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None:
        known = self.hashes.get(path)
        return known[3] if known is not None and known[:3] == (size, mtime_ns, inode) else None

    def store_hashes(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None:
        rows = list(rows)
        for path, size, mtime_ns, inode, digest in rows:
            self.hashes[path] = (size, mtime_ns, inode, digest)
        if self.recorder is not None:
            self.store.store_hashes(rows)
        else:  # explain and -n only read; a run with nothing to do writes them with its record
            self.new_hashes += rows

    def last_record(self, name: str, fresh: bool = False) -> Record | None:
        if name in self.made:
            return self.made[name]
        if fresh and self.recorder is not None:
            found = self.store.record_now(name)
        else:
            latest = self.store.latest.get(name)
            found = None if latest is None else (latest.status, latest.success)
        if found is None:
            return None
        status, success = found
        if status not in _MADE or success is None:
            return Record(False)
        return Record(True, success.detail, success.end)

    def record(self, name: str, succeeded: bool, detail: Mapping[str, Any]) -> None:
        """A failure is on record through its status; a success gets its hashes attached."""
        if succeeded and self.recorder is not None:
            self.made[name] = Record(True, dict(detail), time.time())
            self.recorder.set_detail(name, dict(detail))


def _digest(text: str) -> str:
    return blake2b(text.encode(), digest_size=16).hexdigest()


def command_digest(job: Job) -> str:
    """What runs and where: the command, its shell and its directory."""
    return _digest(repr((job.run, job.shell, job.cwd)))


def env_digests(job: Job) -> dict[str, str]:
    """The environment the file and the command line give the job, a digest per variable
    (values may be secrets: they are not stored)."""
    return {name: _digest(value) for name, value in job.env.items()}


def outputs_digest(record: Record | None) -> str:
    """A need's outputs as its last success left them: what its dependents were made from.
    A need that ran again and rewrote identical bytes keeps the same digest (ninja's restat)."""
    if record is None or not record.succeeded:
        return ""
    return _digest(json.dumps(record.detail.get("outputs", {}), sort_keys=True))


@dataclass
class Check:
    """A job's state now, and the first reason it must run (None: up to date)."""

    reason: str | None
    missing_input: str | None  # a literal input that is not there: the job fails
    inputs: Snapshot
    needs: dict[str, str]

    def detail(self, job: Job, outputs: Snapshot) -> dict[str, Any]:
        """What a success records: the inputs as hashed before the job started (an input
        edited while it ran differs next time), its outputs after, and what it ran with."""
        return {
            "command": command_digest(job),
            "env": env_digests(job),
            "inputs": self.inputs.hashes,
            "outputs": outputs.hashes,
            "needs": self.needs,
        }


def first_reason(
    job: Job,
    record: Record | None,
    inputs: Snapshot,
    outputs: Snapshot,
    needs: Mapping[str, str],
) -> str | None:
    """The first reason, in SPEC.md's order, why a job must run; None when it is up to date."""
    if not job.outputs:
        return "no outputs: always runs"
    if record is None:
        return "never ran"
    if not record.succeeded:
        return "last run failed"
    detail = record.detail
    if outputs.missing:
        return f"output {outputs.missing[0]} missing"
    # Each comparison below is made whole first (in C): a no-op run compares 1,000 jobs.
    made: Mapping[str, str] = detail.get("outputs", {})
    if made != outputs.hashes:
        for path in made:
            if path not in outputs.hashes:
                return f"output {path} missing"
        for path, digest in outputs.hashes.items():
            if made.get(path) != digest:
                return f"output {path} changed since it was made"
    used: Mapping[str, str] = detail.get("inputs", {})
    if used != inputs.hashes:
        for path, digest in inputs.hashes.items():
            if path in used and used[path] != digest:
                return f"input {path} changed"
        for path in inputs.hashes:
            if path not in used:
                return f"input added: {path}"
        for path in used:
            if path not in inputs.hashes:
                return f"input removed: {path}"
    if detail.get("command") != command_digest(job):
        return "command changed"
    env, had = env_digests(job), detail.get("env", {})
    if env != had:
        for name in sorted(env.keys() | had.keys()):
            if env.get(name) != had.get(name):
                return f"env {name} changed"
    for need, digest in needs.items():
        if detail.get("needs", {}).get(need) != digest:
            return f"needs {need} (its outputs changed)"
    return None


class Checker:
    """Decides jobs up to date against a BuildStore; hashing goes through the Hasher."""

    def __init__(self, store: BuildStore, hasher: Hasher, directory: str, force: bool = False) -> None:
        self.store = store
        self.hasher = hasher
        self.directory = directory  # the job file's folder: the cwd of a job without one
        self.force = force

    def base(self, job: Job) -> str:
        return job.cwd or self.directory

    def check(self, job: Job, fresh: bool = False) -> Check:
        """Against the records as the run began, or (`fresh`) as committed now."""
        base = self.base(job)
        inputs = self.hasher.snapshot(base, job.inputs)
        literal_missing = [path for path in inputs.missing if not is_glob(path)]
        needs = {need: outputs_digest(self.store.last_record(need, fresh)) for need in job.needs}
        missing = literal_missing[0] if literal_missing else None
        if missing is not None:
            return Check(f"input missing: {missing}", missing, inputs, needs)
        if not job.outputs:
            return Check("no outputs: always runs", None, inputs, needs)
        record = self.store.last_record(job.name, fresh)
        outputs = self.hasher.snapshot(base, job.outputs) if record and record.succeeded else Snapshot()
        reason = first_reason(job, record, inputs, outputs, needs)
        return Check(reason, None, inputs, needs)

    def finished(self, job: Job, check: Check, succeeded: bool) -> None:
        if not job.outputs:
            return  # it always runs: nothing to remember
        if not succeeded:
            self.store.record(job.name, False, {})
            return
        outputs = self.hasher.snapshot(self.base(job), job.outputs)
        self.store.record(job.name, True, check.detail(job, outputs))


def explain(checker: Checker, jobs: Mapping[str, Job], names: Iterable[str]) -> dict[str, str | None]:
    """Why each job (in an order where needs come first) would run, or None: up to date.
    A need that would run and has outputs may change them, so its dependents would run too."""
    reasons: dict[str, str | None] = {}
    for name in names:
        job = jobs[name]
        reason = checker.check(job).reason
        if reason is None or reason.startswith("input missing: "):  # a need may make it
            running = next((need for need in job.needs if reasons.get(need) and jobs[need].outputs), None)
            if running is not None:
                reason = f"needs {running} (it would run)"
        reasons[name] = reason
    return reasons


class UpToDateGuard:
    """The engine's JobGuard for up-to-date checking: before a job runs, hash its inputs and
    skip it when up to date (or fail it when a literal input is missing); after a success,
    hash its outputs and record them with the input hashes taken before it started."""

    def __init__(self, checker: Checker, inner: JobGuard | None = None) -> None:
        self.checker = checker
        self.inner = inner  # the run state's job lock: the check runs once it is held
        self.checks: dict[str, Check] = {}

    def before(self, job: Job) -> JobResult | None:
        if self.inner is not None:
            done = self.inner.before(job)
            if done is not None:
                return done  # made meanwhile by another run (ok (shared)), or stopped
        if not job.inputs and not job.outputs:
            return None
        check = self.checker.check(job)
        if (
            check.reason is not None
            and check.missing_input is None
            and job.outputs
            and not self.checker.force
        ):
            check = self.checker.check(job, fresh=True)  # made meanwhile by another run?
        done = None
        if check.missing_input is not None:
            done = JobResult(job.name, Status.FAILED, reason=check.reason or "")
        elif check.reason is None and not self.checker.force:
            done = JobResult(job.name, Status.UP_TO_DATE)
        if done is not None and self.inner is not None:
            self.inner.after(job, done)  # the engine calls `after` only when `before` gave None
        if done is None:
            self.checks[job.name] = check
        return done

    def after(self, job: Job, result: JobResult | None) -> None:
        check = self.checks.pop(job.name, None)
        if check is not None:
            self.checker.finished(job, check, result is not None and result.status is Status.OK)
        if self.inner is not None:
            self.inner.after(job, result)
