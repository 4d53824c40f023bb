"""The process supervisor: the running jobs, what they leave behind, and ORCHESTRATE_*.

One object per process that launches jobs (the parent, or each worker process): it knows
which job each running process leader belongs to, kills what a job leaves in its group,
and, as the child subreaper, finds and kills descendants that escaped their job's session.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from collections.abc import Mapping
from typing import Any

import gevent
from gevent import Greenlet

from orchestrator.model import Job
from orchestrator.process import kill_group

# The convention every job's environment carries: the orphan sweep reads it back.
JOB_VARIABLE = "ORCHESTRATE_JOB"
RUN_ID_VARIABLE = "ORCHESTRATE_RUN_ID"
ATTEMPT_VARIABLE = "ORCHESTRATE_ATTEMPT"
PR_SET_CHILD_SUBREAPER = 36


def job_environment(job: Job, run_id: str, attempt: int, base: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment (`base`), then the job's layered env, then ORCHESTRATE_* values."""
    env = dict(base)
    env.update(job.env)
    env[JOB_VARIABLE] = job.name
    env[RUN_ID_VARIABLE] = run_id
    env[ATTEMPT_VARIABLE] = str(attempt)
    return env


class Supervisor:
    """Owns the processes of one run in this process: the running job leaders, the groups
    jobs left behind, and the orphans that escaped their session (setsid, double fork,
    nohup &). Orphan sweeps after job ends are coalesced, so thousands of short jobs cost
    a few scans of our children."""

    SWEEP_DELAY = 0.1

    def __init__(self, run_id: str, kill_grace: float = 5.0) -> None:
        self.run_id = run_id
        self.kill_grace = kill_grace
        self.running: dict[int, str] = {}  # process leader pid -> job name
        self.leftover_groups: set[int] = set()
        self.protected: set[int] = set()  # our own helpers (worker processes)
        self.subreaper = False
        self._program_paths: dict[tuple[str, str], str] = {}
        self.directory = os.getcwd()  # where this process runs (nothing here changes folder)
        self._scheduled: Greenlet[..., Any] | None = None

    # -- launching --
    def find_program(self, name: str, env: Mapping[str, str] | None) -> str:
        """The file `exec` would run for `name`, searched on the job's own PATH (as execvp
        does), remembered per PATH: thousands of jobs run the same few programs."""
        if "/" in name:
            return name
        search_path = (env if env is not None else os.environ).get("PATH", os.defpath)
        key = (name, search_path)
        found = self._program_paths.get(key)
        if found is None:
            found = shutil.which(name, path=search_path)
            if found is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
            self._program_paths[key] = found
        return found

    def started(self, pid: int, job_name: str) -> None:
        self.running[pid] = job_name

    def exited(self, pid: int) -> None:
        self.running.pop(pid, None)
        self.sweep_soon()

    def leave_behind(self, pgid: int) -> None:
        """A job's leader exited: what it left in its group gets TERM now, KILL after grace."""
        if kill_group(pgid, signal.SIGTERM):
            self.leftover_groups.add(pgid)
            gevent.spawn_later(self.kill_grace, self._kill_leftover_group, pgid)

    def _kill_leftover_group(self, pgid: int) -> None:
        self.leftover_groups.discard(pgid)
        kill_group(pgid, signal.SIGKILL)

    # -- orphans --
    def become_subreaper(self) -> bool:
        """Orphans of our jobs get reparented to this process, so sweeps can find them."""
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            self.subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            self.subreaper = False
        return self.subreaper

    def protect(self, pid: int) -> None:
        """One of our own helpers (a worker process), never an orphan to kill."""
        self.protected.add(pid)

    def sweep_soon(self) -> None:
        if self.subreaper and self._scheduled is None:
            self._scheduled = gevent.spawn_later(self.SWEEP_DELAY, self.sweep)

    def sweep(self, everything: bool = False) -> int:
        """Kill orphans of ended jobs (all orphans when `everything`); return how many."""
        self._scheduled = None
        killed = 0
        running = set(self.running.values())
        for pid in _children():
            if pid in self.running or pid in self.protected:
                continue
            fields = _stat_fields(pid)
            if fields is None or fields[0] == b"Z":
                continue  # gone, or a zombie the hub is about to reap
            job, run_id = job_of(pid)
            if everything or (run_id == self.run_id and job not in running):
                _kill_process_and_group(pid)
                killed += 1
        return killed

    def kill_orphans(self, patience: float = 2.0) -> None:
        """Until no orphan is left: killing one may orphan its own children."""
        deadline = gevent.get_hub().loop.now() + patience
        while self.sweep(everything=True) and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.02)

    def close(self) -> None:
        """At the end of a run: nothing a job started may outlive it."""
        while self.leftover_groups:
            kill_group(self.leftover_groups.pop(), signal.SIGKILL)
        if self.subreaper:
            self.kill_orphans()


def job_of(pid: int) -> tuple[str | None, str | None]:
    """The job and run a process belongs to, from the ORCHESTRATE_* it inherited."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            variables = environ.read().split(b"\0")
    except OSError:
        return None, None
    found = {}
    for variable in variables:
        if variable.startswith(b"ORCHESTRATE_"):
            key, _, value = variable.partition(b"=")
            found[key.decode()] = value.decode(errors="replace")
    return found.get(JOB_VARIABLE), found.get(RUN_ID_VARIABLE)


def _children() -> list[int]:
    """Our children: the kernel's list of each thread's children where it keeps one
    (CONFIG_PROC_CHILDREN), a few reads instead of one per process on the machine."""
    if not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return _children_by_scan()
    children: list[int] = []
    for task in os.listdir("/proc/self/task"):
        try:
            children += map(int, _read_all(f"/proc/self/task/{task}/children").split())
        except FileNotFoundError:
            continue  # a thread that just ended
    return children


def _read_all(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # os.open, not open(): sweeps are frequent
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/PID/stat after the command name: state, parent, ..."""
    try:
        return _read_all(f"/proc/{pid}/stat").rpartition(b")")[2].split()
    except OSError:
        return None


def _children_by_scan() -> list[int]:
    me = os.getpid()
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields and int(fields[1]) == me and fields[0] != b"Z":
                children.append(int(entry.name))
    return children


def _kill_process_and_group(pid: int) -> None:
    try:
        pgid = os.getpgid(pid)
        if pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
