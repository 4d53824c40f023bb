"""Run state under `.orchestrate/`: the SQLite state database, per-job locks, and `--resume`."""

from __future__ import annotations

import errno
import fcntl
import json
import operator
import os
import sqlite3
import sys
import time
from _blake2 import blake2b  # hashlib's own, without OpenSSL (see hashing.py)
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from orchestrator.graph import order
from orchestrator.logs import safe_file_name
from orchestrator.model import Job
from orchestrator.results import Attempt, JobResult, RunSummary, Status, StopReason

if TYPE_CHECKING:  # the store and the locks work without gevent too (a run with nothing to do)
    from gevent.event import Event
    from gevent.threadpool import ThreadPool

T = TypeVar("T")
SCHEMA_VERSION = 1  # PRAGMA user_version: a later issue migrates from here
HASH_CHECKS = 1000  # cached hashes whose file is looked for, per run (all_hashes)
KEEP_RUNS = 50  # runs kept per job file
RECENT_DURATIONS = 5  # successful seconds kept per job, for the scheduler
BUSY_MILLISECONDS = 10_000  # how long a write waits for another process's transaction
SUCCESS = frozenset(status.value for status in Status if status.succeeded)
# Results that say nothing new about a job: its latest state stays as its last real run left it.
NEVER_RAN = frozenset((Status.SKIPPED.value, Status.CANCELLED.value, Status.UP_TO_DATE.value))
SHAREABLE = frozenset((Status.OK.value, Status.SHARED.value, Status.UP_TO_DATE.value))

FINGERPRINT_FIELDS = (
    *("run", "env", "cwd", "shell", "needs", "matrix", "resources", "timeout", "retries"),
    *("inputs", "outputs", "host_resources"),
)
_fingerprint_fields = operator.attrgetter(*FINGERPRINT_FIELDS)


def fingerprint(job: Job) -> str:
    """A digest of the fields that decide what a job does (FINGERPRINT_FIELDS): one repr and
    one short blake2b a job, as 100,000 jobs must cost little at the start of every run."""
    return blake2b(repr(_fingerprint_fields(job)).encode(), digest_size=8).hexdigest()


def state_directory(job_file_directory: str, override: str | None = None) -> str:
    return os.path.abspath(override or os.path.join(job_file_directory, ".orchestrate"))


def lock_path(state_dir: str, job_file: str) -> str:
    """`locks/FILE.lock`: the job locks of one job file (see JobLocks)."""
    return os.path.join(state_dir, "locks", safe_file_name(os.path.basename(job_file)) + ".lock")


def cache_path(state_dir: str, job_file: str) -> str:
    """`cache/FILE.marshal`: the job file as the last run loaded it (jobcache)."""
    return os.path.join(state_dir, "cache", safe_file_name(os.path.basename(job_file)) + ".marshal")


def log_directory(state_dir: str, job_file: str) -> str:
    """`logs/FILE/`: two job files in one folder never share a log."""
    return os.path.join(state_dir, "logs", safe_file_name(os.path.basename(job_file)))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, job_file TEXT NOT NULL, selection TEXT NOT NULL, arguments TEXT NOT NULL,
    start REAL NOT NULL, end REAL, stop_reason TEXT, exit_code INTEGER);
CREATE INDEX IF NOT EXISTS runs_by_file ON runs (job_file, start);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, job_file TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, exit_code INTEGER, signal INTEGER, attempts INTEGER NOT NULL,
    start REAL, end REAL, fingerprint TEXT, log_path TEXT, reason TEXT, duration REAL,
    tail TEXT, ready REAL, slot INTEGER, host TEXT, timed_out INTEGER NOT NULL,
    tries TEXT NOT NULL, detail TEXT, PRIMARY KEY (run_id, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (
    job_file TEXT NOT NULL, name TEXT NOT NULL, run_id TEXT NOT NULL, status TEXT NOT NULL,
    fingerprint TEXT, end REAL, success_fingerprint TEXT, success_end REAL, success_detail TEXT,
    durations TEXT, PRIMARY KEY (job_file, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
    digest TEXT NOT NULL) WITHOUT ROWID;
"""

Statements = list[tuple[str, list[tuple[Any, ...]]]]  # (SQL, its rows): one transaction's work
_INSERT_RUN = "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)"
_INSERT_HASH = "INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?,?)"
_INSERT_RESULT = "INSERT OR REPLACE INTO results VALUES (" + ",".join("?" * 21) + ")"
# A job that never started (up to date, skipped, cancelled): most columns are empty, and
# binding 21 values a row cost a no-op run of 1,000 jobs 5 ms more than these 9.
_INSERT_UNSTARTED = (
    "INSERT OR REPLACE INTO results (run_id, job_file, position, name, status, fingerprint, log_path, "
    "reason, ready, attempts, timed_out, tries) VALUES (?,?,?,?,?,?,?,?,?,0,0,'[]')"
)
_UPSERT_RAN = (
    "INSERT INTO latest (job_file, name, run_id, status, fingerprint, end) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT (job_file, name) DO UPDATE SET run_id = excluded.run_id, status = excluded.status, "
    "fingerprint = excluded.fingerprint, end = excluded.end"
)
_UPSERT_SUCCESS = (
    "INSERT INTO latest VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (job_file, name) DO UPDATE SET "
    "run_id = excluded.run_id, status = excluded.status, fingerprint = excluded.fingerprint, "
    "end = excluded.end, success_fingerprint = excluded.success_fingerprint, "
    "success_end = excluded.success_end, "
    # A success that brings no detail (up to date, shared, resumed) keeps the hashes on record.
    "success_detail = coalesce(excluded.success_detail, success_detail), "
    "durations = coalesce(excluded.durations, durations)"
)


class SuccessRecord(NamedTuple):  # tuples: a run reads one per job, and a frozen dataclass costs 3x
    """A job's last success on record: its fingerprint, the `detail` stored with it (issue
    12's input and output hashes), and when it ended (epoch seconds)."""

    fingerprint: str
    detail: dict[str, Any]
    end: float


class Latest(NamedTuple):
    """What is on record about a job of this file before this run: its latest result that
    ran (skipped, cancelled and up-to-date say nothing), its last success, its recent durations."""

    status: str
    fingerprint: str | None
    success: SuccessRecord | None
    recent: str | None  # its recent durations as stored (JSON): a run with nothing to do needs none

    @property
    def durations(self) -> tuple[float, ...]:
        return tuple(_decode_json(self.recent)) if self.recent else ()


class RecentDurations(dict[str, list[float]]):
    """Each job's recent durations as this run adds its successes: a job's record is decoded
    when it first succeeds here, not every job's as the run begins (the scheduler's medians
    have decoded them all once already; a second pass took 0.3-0.5 s for 100,000 jobs)."""

    def __init__(self, latest: Mapping[str, Latest]) -> None:
        super().__init__()
        self.latest = latest

    def __missing__(self, name: str) -> list[float]:
        on_record = self.latest.get(name)
        recent = self[name] = list(on_record.durations) if on_record is not None else []
        return recent


class RunRecord(NamedTuple):
    """One row of `orchestrate history`."""

    run_id: str
    job_file: str
    selection: list[str]
    arguments: list[str]
    start: float
    end: float | None
    stop_reason: str | None
    exit_code: int | None
    counts: dict[str, int]
    running: bool = False  # no end on record, and its process still holds its run lock


_encode_json = json.JSONEncoder(separators=(",", ":")).encode
_decode_json = json.JSONDecoder().decode


def _warn(text: str) -> None:
    print(f"orchestrate: warning: {text}", file=sys.stderr, flush=True)


def _is_busy(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


class StateStore:
    """The run state of one job file in `state.db`, through one connection used only in a
    thread of its own: every query and commit is handed to that thread, and the hub waits
    for it cooperatively, so the hub never blocks on the disk or on another process's lock.

    Bad state never stops a run: a database that cannot be read is moved aside (one warning)
    and this run starts afresh, replaying its own results so far; one that is locked too long
    or a folder that cannot be written means one warning and no state for the rest of the
    run. Methods are called from greenlets of the hub's thread; `threaded=False` does the work
    right in the caller, for a run that never starts the hub.
    """

    def __init__(
        self, directory: str, job_file: str, warn: Callable[[str], None] = _warn, threaded: bool = True
    ) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "state.db")
        self.job_file = os.path.abspath(job_file)
        self.warn = warn
        self.connection: sqlite3.Connection | None = None
        self.pool: ThreadPool | None = None
        if threaded:
            from orchestrator.threads import quiet_thread_pool

            self.pool = quiet_thread_pool(1)
        self.broken = False  # warned once; from now on no state
        self.run_row: tuple[Any, ...] | None = None
        self.written: Statements = []  # this run's statements, for a replay
        self.latest: dict[str, Latest] = {}

    def _call(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in the store's thread (the hub waits cooperatively), or right here."""
        if self.pool is None:
            return work(*args)
        result: T = self.pool.apply(work, args)
        return result

    # -- the thread's side --
    def _connect(self) -> sqlite3.Connection:
        """Open and set up the database; while another run is setting up the same new
        database, wait for it (here, in the state's thread): switching a new database to WAL
        takes a lock that SQLite's busy timeout does not wait for."""
        deadline = time.monotonic() + BUSY_MILLISECONDS / 1000
        while True:
            try:
                return self._connect_once()
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect_once(self) -> sqlite3.Connection:
        os.makedirs(self.directory, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=BUSY_MILLISECONDS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_MILLISECONDS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.OperationalError(f"schema version {version} is newer than this orchestrate's")
            if version < SCHEMA_VERSION:
                with connection:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executescript(_SCHEMA.replace("\n", " ").strip().rstrip(";") + ";")
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return connection
        except BaseException:
            connection.close()
            raise

    def _ensure(self) -> sqlite3.Connection | None:
        if self.connection is None and not self.broken:
            self.connection = self._connect()
        return self.connection

    def _safely(self, operation: Callable[[sqlite3.Connection], Any], default: Any = None) -> Any:
        """Run `operation` on the connection in this thread, recovering from bad state once."""
        for attempt in (1, 2):
            if self.broken:
                return default
            try:
                connection = self._ensure()
                if connection is None:
                    return default
                return operation(connection)
            except (sqlite3.Error, OSError) as error:
                if attempt == 2 or not self._recover(error):
                    self._give_up(error)
        return default

    def _give_up(self, error: BaseException) -> None:
        if not self.broken:
            self.broken = True
            self.warn(f"run state {self.path}: {_describe(error)}; going on without run state")
        self._close_connection()

    def _recover(self, error: BaseException) -> bool:
        """A database that cannot be read is moved aside and started afresh, with this run's
        own records so far written again; True if that worked."""
        self._close_connection()
        if (
            isinstance(error, OSError)
            or _is_busy(error)
            or "readonly" in str(error)
            or "unable to open" in str(error)
        ):
            return False
        aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
            connection = self.connection = self._connect()
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                if self.run_row is not None:
                    connection.execute(_INSERT_RUN, self.run_row)
                for statement, rows in self.written:
                    connection.executemany(statement, rows)
        except (sqlite3.Error, OSError) as again:
            self._give_up(again)
            return True  # warned already
        self.warn(f"{self.path} could not be read ({_describe(error)}): moved aside to {aside}; fresh state")
        return True

    def _close_connection(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except sqlite3.Error:
                pass
            self.connection = None

    def _begin(self, connection: sqlite3.Connection) -> dict[str, Latest]:
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            if self.run_row is not None:
                connection.execute(_INSERT_RUN, self.run_row)
            self._prune(connection)
        return self._read_latest(connection)

    def _prune(self, connection: sqlite3.Connection) -> None:
        """Keep the last KEEP_RUNS runs of this file (in the caller's transaction)."""
        cutoff = connection.execute(
            "SELECT start FROM runs WHERE job_file = ? ORDER BY start DESC LIMIT 1 OFFSET ?",
            (self.job_file, KEEP_RUNS - 1),
        ).fetchone()
        if cutoff is not None:
            old = "SELECT id FROM runs WHERE job_file = ? AND start < ?"
            connection.execute(f"DELETE FROM results WHERE run_id IN ({old})", (self.job_file, cutoff[0]))
            connection.execute(
                "DELETE FROM runs WHERE job_file = ? AND start < ?", (self.job_file, cutoff[0])
            )

    def _read_latest(self, connection: sqlite3.Connection) -> dict[str, Latest]:
        rows = connection.execute(
            "SELECT name, status, fingerprint, success_fingerprint, success_end, success_detail, durations "
            "FROM latest WHERE job_file = ?",
            (self.job_file,),
        ).fetchall()
        latest = {}
        for name, status, fingerprint_, success_fingerprint, success_end, detail, durations in rows:
            success = None
            if success_fingerprint is not None:
                success = SuccessRecord(
                    success_fingerprint, _decode_json(detail) if detail else {}, success_end or 0.0
                )
            latest[name] = Latest(status, fingerprint_, success, durations)
        return latest

    def _write(self, statements: Statements, prune: bool = False) -> None:
        """Commit the statements in one transaction (and keep only the last runs: `prune`)."""

        def commit(connection: sqlite3.Connection) -> None:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                for statement, rows in statements:
                    connection.executemany(statement, rows)
                if prune:
                    self._prune(connection)

        self.written.extend(statements)
        self._safely(commit)

    # -- the hub's side --
    def begin(self, run_id: str, selection: Iterable[str], arguments: Sequence[str], start: float) -> None:
        """Record the run, prune old runs, and read what is on record about this file's jobs."""
        self.run_row = (*self._run_fields(run_id, selection, arguments, start), None, None, None)
        self.latest = self._call(self._safely, self._begin, {})

    def _run_fields(
        self, run_id: str, selection: Iterable[str], arguments: Sequence[str], start: float
    ) -> tuple[Any, ...]:
        """A run's row up to its start; its end, stop reason and exit code follow."""
        return (run_id, self.job_file, _encode_json(list(selection)), _encode_json(arguments), start)

    def read(self) -> dict[str, Latest]:
        """What is on record about this file's jobs, read without writing (`-n`, explain, and
        a run that may have nothing to do)."""
        if not os.path.exists(self.path):
            return {}
        self.latest = self._call(self._safely, self._read_latest, {})
        return self.latest

    def write(self, statements: Statements, then: Callable[[], None] | None = None) -> None:
        """Commit these statements in one transaction in the store's thread, waiting for it
        cooperatively; `then` runs in the thread after the commit (releasing job locks)."""

        def work() -> None:
            try:
                self._write(statements)
            finally:
                if then is not None:
                    then()

        self._call(work)

    def latest_now(self, name: str) -> tuple[str, str | None, float | None] | None:
        """A job's latest result as committed now (by any process): status, fingerprint, end."""

        def query(connection: sqlite3.Connection) -> Any:
            return connection.execute(
                "SELECT status, fingerprint, end FROM latest WHERE job_file = ? AND name = ?",
                (self.job_file, name),
            ).fetchone()

        row = self._call(self._safely, query)
        return None if row is None else (row[0], row[1], row[2])

    def record_now(self, name: str) -> tuple[str, SuccessRecord | None] | None:
        """A job's latest status and last success as committed now, by any process (issue 12:
        a need that finished in this run, a job another run just made)."""

        def query(connection: sqlite3.Connection) -> Any:
            return connection.execute(
                "SELECT status, success_fingerprint, success_end, success_detail FROM latest "
                "WHERE job_file = ? AND name = ?",
                (self.job_file, name),
            ).fetchone()

        row = self._call(self._safely, query)
        if row is None:
            return None
        success = None
        if row[1] is not None:
            success = SuccessRecord(row[1], json.loads(row[3] or "{}"), row[2] or 0.0)
        return str(row[0]), success

    def expected_durations(self) -> dict[str, float]:
        """Seconds each job took, the median of its recent successful runs."""
        from orchestrator.schedule import median  # only the scheduler asks: a no-op run never does

        return {name: median(recent) for name, x in self.latest.items() if (recent := x.durations)}

    def all_hashes(self, forget_missing: bool = False) -> dict[str, tuple[int, int, int, str]]:
        """Every stored digest, path -> (size, mtime_ns, inode, digest), in one query: a run
        looks its files up here rather than asking the thread once per file (issue 12).

        `forget_missing` (a run, not a read-only look): the rows of up to HASH_CHECKS files
        that no longer exist are deleted first, so the cache does not keep every path ever
        hashed, which every run that tracks files reads whole. The files are a random sample,
        so every row is checked in time at a bounded cost per run."""

        def query(connection: sqlite3.Connection) -> Any:
            rows = connection.execute(
                "SELECT path, size, mtime_ns, inode, digest FROM file_hashes"
            ).fetchall()
            if not forget_missing or not rows:
                return rows
            import random  # only a run that tracks files gets here

            paths = [row[0] for row in rows]
            sample = paths if len(paths) <= HASH_CHECKS else random.sample(paths, HASH_CHECKS)
            gone = {path for path in sample if not os.path.exists(path)}
            if not gone:
                return rows
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany("DELETE FROM file_hashes WHERE path = ?", [(path,) for path in gone])
            return [row for row in rows if row[0] not in gone]

        rows = self._call(self._safely, query, [])
        return {path: (size, mtime_ns, inode, digest) for path, size, mtime_ns, inode, digest in rows}

    def store_hashes(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None:
        """Remember digests: rows of (path, size, mtime_ns, inode, digest); committed off the hub."""
        self.write([(_INSERT_HASH, [tuple(row) for row in rows])])

    def end(self, summary: RunSummary) -> None:
        if self.run_row is None:
            return
        stop = summary.stop_reason.value if summary.stop_reason else None
        self.run_row = (*self.run_row[:5], time.time(), stop, summary.exit_code)
        self.write(
            [
                (
                    "UPDATE runs SET end = ?, stop_reason = ?, exit_code = ? WHERE id = ?",
                    [(*self.run_row[5:], self.run_row[0])],
                )
            ]
        )

    def record_finished_run(
        self,
        summary: RunSummary,
        selection: Iterable[str],
        arguments: Sequence[str],
        statements: Statements,
        hashes: Iterable[tuple[str, int, int, int, str]] = (),
    ) -> None:
        """Record a whole run at once, with its results' statements and new file hashes (a
        run with nothing to do, decided before any engine started)."""
        stop = summary.stop_reason.value if summary.stop_reason else None
        start = summary.started or time.time()
        run = (
            *self._run_fields(summary.run_id, selection, arguments, start),
            *(start + summary.elapsed, stop, summary.exit_code),
        )
        hashed = (_INSERT_HASH, [tuple(row) for row in hashes])
        self._call(self._write, [(_INSERT_RUN, [run]), *statements, hashed], True)

    def close(self) -> None:
        """Wait for every commit, then close the connection and the thread."""
        self._call(self._close_connection)
        if self.pool is not None:
            self.pool.kill()

    # -- reading past runs (history, report) --
    def runs(self, limit: int = 20) -> list[RunRecord]:
        def query(connection: sqlite3.Connection) -> list[RunRecord]:
            runs = connection.execute(
                "SELECT * FROM runs WHERE job_file = ? ORDER BY start DESC LIMIT ?", (self.job_file, limit)
            ).fetchall()
            records = []
            for row in runs:
                counts = dict(
                    connection.execute(
                        "SELECT status, count(*) FROM results WHERE run_id = ? GROUP BY status", (row[0],)
                    ).fetchall()
                )
                records.append(
                    RunRecord(
                        row[0],
                        row[1],
                        json.loads(row[2]),
                        json.loads(row[3]),
                        row[4],
                        row[5],
                        row[6],
                        row[7],
                        counts,
                    )
                )
            return records

        if not os.path.exists(self.path):
            return []
        result: list[RunRecord] = self._call(self._safely, query, [])
        unended = [record.run_id for record in result if record.end is None]
        if unended:
            live = live_runs(lock_path(self.directory, self.job_file), unended)
            result = [record._replace(running=record.run_id in live) for record in result]
        return result

    def summary(self, run_id: str | None) -> tuple[RunRecord, RunSummary] | None:
        """A past run (the latest if None) as a RunSummary, rebuilt from its rows."""
        records = self.runs(KEEP_RUNS + 10)
        chosen = [r for r in records if run_id is None or r.run_id == run_id or r.run_id.startswith(run_id)]
        if not chosen:
            return None
        record = chosen[0]

        def query(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(
                "SELECT * FROM results WHERE run_id = ? ORDER BY position", (record.run_id,)
            ).fetchall()

        rows = self._call(self._safely, query, [])
        summary = RunSummary([_result_from_row(row) for row in rows])
        summary.run_id, summary.started = record.run_id, record.start
        summary.stop_reason = StopReason(record.stop_reason) if record.stop_reason else None
        summary.elapsed = (record.end or record.start) - record.start
        return record, summary


RUN_LOCKS = 1 << 56  # run locks lie above every job lock (JobLocks.offset: 7-byte digests)


def run_lock_offset(run_id: str) -> int:
    return RUN_LOCKS + JobLocks.offset(run_id)


def _lock(fd: int, kind: int, offset: int, length: int = 1) -> bool:
    """Take a record lock of `kind` without waiting: False when another process holds it."""
    try:
        fcntl.lockf(fd, kind | fcntl.LOCK_NB, length, offset)
        return True
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def hold_run(locks: JobLocks, run_id: str) -> None:
    """Lock the run's own byte of the job file's lock file until `locks` closes, before its
    row is written: a row with no end is a live run while that lock is held, and the kernel
    drops it when the run dies, even by SIGKILL. Job locks cannot tell: they are held only
    while jobs run, and by any run of the file; a recorded pid can be reused by another
    process. Best effort: without it (no fcntl locks there) a live run merely reads as killed."""
    try:
        _lock(locks.fd, fcntl.LOCK_EX, run_lock_offset(run_id))
    except OSError:
        pass


def live_runs(lock_file: str, run_ids: Iterable[str]) -> set[str]:
    """Which of these runs' processes are alive: those whose run lock (hold_run) is held.
    Never from inside a run: closing any descriptor of the file drops the caller's own locks."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return set()  # no lock file: no run of this file is alive
    live = set()
    try:
        for run_id in run_ids:
            offset = run_lock_offset(run_id)
            try:
                if not _lock(fd, fcntl.LOCK_SH, offset):
                    live.add(run_id)
                    continue
            except OSError:
                continue  # no record locks here: nothing can be told
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
    finally:
        os.close(fd)
    return live


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def result_row(
    run_id: str,
    job_file: str,
    position: int,
    result: JobResult,
    fingerprint_: str | None,
    detail: dict[str, Any] | None,
) -> tuple[Any, ...]:
    tries = [
        [t.number, t.start, t.end, t.exit_code, t.signal, t.timed_out, t.slot, t.host] for t in result.tries
    ]
    return (
        run_id,
        job_file,
        position,
        result.name,
        result.status.value,
        result.exit_code,
        result.signal,
        result.attempts,
        result.start,
        result.end,
        fingerprint_,
        result.log_path,
        result.reason,
        result.duration,
        result.tail[-2000:],
        result.ready,
        result.slot,
        result.host,
        int(result.timed_out),
        _encode_json(tries) if tries else "[]",
        None if detail is None else _encode_json(detail),
    )


def _result_from_row(row: tuple[Any, ...]) -> JobResult:
    tries = [
        Attempt(n, s, e, code, sig, bool(timed), slot, host)
        for n, s, e, code, sig, timed, slot, host in json.loads(row[19])
    ]
    return JobResult(
        name=row[3],
        status=Status(row[4]),
        exit_code=row[5],
        signal=row[6],
        attempts=row[7],
        start=row[8],
        end=row[9],
        log_path=row[11],
        reason=row[12] or "",
        tail=row[14] or "",
        ready=row[15],
        slot=row[16],
        host=row[17],
        timed_out=bool(row[18]),
        tries=tries,
    )


def jobs_to_skip(
    latest: Mapping[str, Latest],
    fingerprints: Mapping[str, str],
    needs: Mapping[str, Iterable[str]],
    names: list[str],
) -> set[str]:
    """`--resume`: selected jobs whose latest result is a success with an unchanged
    fingerprint, and none of whose selected needs runs again."""
    selected = set(names)
    done = set()
    for name in names:  # names are in a valid order: needs come first
        record = latest.get(name)
        if record is None or record.status not in SUCCESS or record.fingerprint != fingerprints[name]:
            continue
        if any(need in selected and need not in done for need in needs[name]):
            continue
        done.add(name)
    return done


def resumed_jobs(
    latest: Mapping[str, Latest], jobs: Mapping[str, Job], names: list[str], fingerprints: Mapping[str, str]
) -> frozenset[str]:
    """The selected jobs `--resume` skips (see jobs_to_skip), in a run or a dry run."""
    needs = {name: jobs[name].needs for name in names}
    return frozenset(jobs_to_skip(latest, fingerprints, needs, order(jobs, names)))


class JobLocks:
    """A lock per (job file, job), so two runs of one file never run a job at once: a
    one-byte POSIX record lock in `locks/FILE.lock` at an offset given by the job's name.
    The kernel drops them when their process dies, even by SIGKILL. One lock file and one
    descriptor for the whole run: a job costs one fcntl to lock and one to unlock (a file
    per job cost an open and a close each, and 130 us to create on ext4).

    A job's lock is released only once its result is committed (StateRecorder), so a run
    that waited sees it; when that run ended in a success with the same fingerprint after
    this run began, the job is `ok (shared)` and nothing runs."""

    def __init__(
        self, store: StateStore | None, lock_path: str, fingerprints: Mapping[str, str], run_start: float
    ) -> None:
        self.store = store
        self.fingerprints = fingerprints
        self.run_start = run_start
        self.fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.held: dict[str, int] = {}
        self.stop: Event | None = None  # the engine's stop event: stop waiting
        self.log_path: Callable[[str], str | None] = lambda name: None

    @staticmethod
    def offset(name: str) -> int:
        return int.from_bytes(blake2b(name.encode(), digest_size=7).digest(), "big")

    def _try(self, offset: int, length: int = 1) -> bool:
        return _lock(self.fd, fcntl.LOCK_EX, offset, length)

    def before(self, job: Job) -> JobResult | None:
        offset = self.offset(job.name)
        if self._try(offset):
            self.held[job.name] = offset
            return None
        delay = 0.005
        while not self._try(offset):
            if self.stop is not None and self.stop.wait(delay):
                return JobResult(job.name, Status.CANCELLED, reason="stopped while another run held it")
            if self.stop is None:
                import gevent  # only a run in the engine waits for another run's lock

                gevent.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.held[job.name] = offset
        latest = self.store.latest_now(job.name) if self.store is not None else None
        if latest is not None:
            status, fingerprint_, end = latest
            if (
                status in SHAREABLE
                and fingerprint_ == self.fingerprints.get(job.name)
                and (end or 0) >= self.run_start
            ):
                self.release([job.name])
                now = time.time()
                return JobResult(
                    job.name, Status.SHARED, start=now, end=now, log_path=self.log_path(job.name)
                )
        return None

    def try_all(self) -> bool:
        """Take the whole lock file at once, without waiting: False if another run holds
        any job of this file. Held until `close`; another run wanting a job meanwhile waits,
        as for any job lock (one fcntl: a lock per job cost a no-op run of 1,000 jobs 6 ms)."""
        return self._try(0, RUN_LOCKS)  # every job's offset; not the live runs' (hold_run)

    def after(self, job: Job, result: JobResult | None) -> None:
        """Nothing yet: the lock goes once the job's result is committed."""

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            offset = self.held.pop(name, None)
            if offset is not None:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        os.close(self.fd)  # drops every lock still held


def _never_started(result: JobResult) -> bool:
    """Whether every column _INSERT_UNSTARTED leaves out would be empty."""
    return (
        result.start is None
        and result.end is None
        and result.attempts == 0
        and result.exit_code is None
        and result.signal is None
        and not result.tail
        and result.slot is None
        and result.host is None
        and not result.timed_out
        and not result.tries
    )


def result_statements(
    job_file: str,
    run_id: str,
    positions: Mapping[str, int],
    fingerprints: Mapping[str, str],
    results: Iterable[JobResult],
    details: dict[str, dict[str, Any]],
    durations: RecentDurations,
) -> Statements:
    """What records these results: a row per result, and each job's latest state. A job's
    `details` entry (issue 12's hashes) is taken with its success; a success's duration joins
    `durations`, the job's recent ones, kept for the scheduler."""
    inserted, unstarted, ran, succeeded = [], [], [], []
    for result in results:
        name = result.name
        fp = fingerprints.get(name)
        detail = details.pop(name, None)
        position = positions.get(name, -1)
        status = result.status.value
        if detail is None and _never_started(result):
            unstarted.append(
                (run_id, job_file, position, name, status, fp, result.log_path, result.reason, result.ready)
            )
        else:
            inserted.append(result_row(run_id, job_file, position, result, fp, detail))
        if status in NEVER_RAN:
            continue
        end = result.end or time.time()
        if status not in SUCCESS:
            ran.append((job_file, name, run_id, status, fp, end))
            continue
        recent_durations = None
        if result.status is Status.OK and result.duration is not None:
            recent = durations[name]
            recent.append(round(result.duration, 4))
            del recent[:-RECENT_DURATIONS]
            recent_durations = _encode_json(recent)
        success_detail = None if detail is None else _encode_json(detail)
        succeeded.append((job_file, name, run_id, status, fp, end, fp, end, success_detail, recent_durations))
    return [
        (_INSERT_RESULT, inserted),
        (_INSERT_UNSTARTED, unstarted),
        (_UPSERT_RAN, ran),
        (_UPSERT_SUCCESS, succeeded),
    ]
