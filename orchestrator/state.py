"""Run history under `.orchestrate/` beside the job file, and what `--resume` reruns."""

from __future__ import annotations

import json
import operator
import os
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import Event
from gevent.threadpool import ThreadPool

from orchestrator.listeners import RunListener
from orchestrator.model import Job
from orchestrator.results import JobResult
from orchestrator.threads import quiet_thread_pool

FINGERPRINT_FIELDS = ("run", "env", "cwd", "shell", "needs", "matrix", "resources", "timeout", "retries")
_fingerprint_fields = operator.attrgetter(*FINGERPRINT_FIELDS)
_FINGERPRINT_FORMAT = "%08x" * len(
    FINGERPRINT_FIELDS
)  # one format, not one per field: 100,000 jobs 0.99 -> 0.66 s


def history_path(jobfile_path: str) -> str:
    directory = os.path.join(os.path.dirname(os.path.abspath(jobfile_path)), ".orchestrate")
    return os.path.join(directory, os.path.basename(jobfile_path) + ".history.jsonl")


def fingerprint(job: Job) -> str:
    """A crc32 per field that decides what a job does, in FINGERPRINT_FIELDS order, so a
    change can be named. (crc32, not a cryptographic hash: it only has to notice edits, and
    100,000 jobs must cost little at the start of every run.)"""
    return _FINGERPRINT_FORMAT % tuple(
        [zlib.crc32(repr(value).encode()) for value in _fingerprint_fields(job)]
    )


def changed_fields(old: str, new: str) -> list[str]:
    return [
        name for i, name in enumerate(FINGERPRINT_FIELDS) if old[8 * i : 8 * i + 8] != new[8 * i : 8 * i + 8]
    ]


_encode_json = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps builds an encoder per call


class HistoryWriter:
    """The file of one run: started afresh (only the last run is ever read), then one JSON
    line per event, each written whole and at once, so a run killed with SIGKILL leaves
    every finished job on record. `sync` (fdatasync) is called by the caller, which may
    batch it off the hub."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Whole lines in one write (O_APPEND), so a crash never leaves half a record
        before a whole one."""
        os.write(self.fd, "".join(_encode_json(r) + "\n" for r in records).encode())

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def start_record(
    run_id: str, started: float, jobs: Mapping[str, Job], names: Iterable[str]
) -> dict[str, Any]:
    return {
        "event": "run",
        "run_id": run_id,
        "started": started,
        "jobs": {name: fingerprint(jobs[name]) for name in names},
    }


def job_record(run_id: str, result: JobResult) -> dict[str, Any]:
    return {
        "event": "job",
        "run_id": run_id,
        "name": result.name,
        "status": result.status.value,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "attempts": result.attempts,
        "start": result.start,
        "end": result.end,
    }


@dataclass
class PreviousRun:
    run_id: str
    fingerprints: dict[str, str]
    succeeded: set[str]


def read_previous_run(path: str) -> PreviousRun | None:
    """The last run on record; torn or foreign lines (a crash mid-write) are ignored."""
    try:
        with open(path, "rb") as history:
            lines = history.read().splitlines()
    except FileNotFoundError:
        return None
    last_start = None
    for index, line in enumerate(lines):
        if line.startswith(b'{"event":"run"'):
            last_start = index
    if last_start is None:
        return None
    try:
        start = json.loads(lines[last_start])
    except ValueError:
        return None
    previous = PreviousRun(start["run_id"], start["jobs"], set())
    for line in lines[last_start + 1 :]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("run_id") == previous.run_id and record.get("status") in (
            "ok",
            "allowed",
            "ok (resumed)",
        ):
            previous.succeeded.add(record["name"])
    return previous


class ResumeRefused(Exception):
    """The job file changed so that the last run's record no longer says what is done."""


def jobs_to_skip(previous: PreviousRun, jobs: Mapping[str, Job], names: list[str]) -> set[str]:
    """Jobs done last time that need not run again: succeeded, unchanged, and not after a
    job that must rerun."""
    for name in names:
        if name in previous.succeeded:
            changed = changed_fields(previous.fingerprints.get(name, ""), fingerprint(jobs[name]))
            if changed:
                raise ResumeRefused(
                    f'job "{name}" changed since the last run ({", ".join(changed)}); '
                    "run without --resume to start over"
                )
    selected = set(names)
    done = {name for name in names if name in previous.succeeded}
    for name in names:  # names are in a valid order: needs come first
        if name in done and any(need in selected and need not in done for need in jobs[name].needs):
            done.discard(name)
    return done


class History(RunListener):
    """The run's record under .orchestrate/: a JSON line per finished job.

    Lines finished in one turn of the hub go out in one write before the hub waits again,
    so a run killed with SIGKILL loses nothing that finished; fdatasync runs in a thread of
    its own at most every SYNC_INTERVAL, so neither the hub nor the disk is hammered."""

    SYNC_INTERVAL = 0.2

    def __init__(self, path: str, start: dict[str, Any]) -> None:
        self.writer = HistoryWriter(path)
        self.run_id = start["run_id"]
        self.writer.append([start])
        self.pending: list[dict[str, Any]] = []
        self.syncing: gevent.Greenlet[..., None] | None = None
        self.sync_thread: ThreadPool | None = None  # fdatasync runs there, off the hub
        self.dirty = True
        self.closing = Event()

    def job_finished(self, result: JobResult) -> None:
        if not self.pending:
            gevent.get_hub().loop.run_callback(self._write)
        self.pending.append(job_record(self.run_id, result))

    def _write(self) -> None:
        records, self.pending = self.pending, []
        if records:
            self.writer.append(records)
            self.dirty = True
            if self.syncing is None:
                self.syncing = gevent.spawn(self._sync)

    def _sync(self) -> None:
        while self.dirty:
            self.dirty = False
            if self.sync_thread is None:
                self.sync_thread = quiet_thread_pool(1)
            self.sync_thread.apply(self.writer.sync)
            self.closing.wait(self.SYNC_INTERVAL)
        self.syncing = None

    def close(self) -> None:
        self._write()
        self.closing.set()
        if self.syncing is not None:
            self.syncing.join()
        self.writer.sync()
        self.writer.close()
        if self.sync_thread is not None:
            self.sync_thread.kill()
