"""Which job file a command means: `-f FILE`, `-f -` (stdin), an old-style first argument, or discovery."""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

from orchestrator.errors import UsageError

JOB_FILE_NAMES = ("orchestrate.yaml", "orchestrate.yml", "jobs.yaml", "jobs.yml")
JOB_FILE_SUFFIXES = (".yaml", ".yml")
STDIN_NAME = "<stdin>"


class JobSource(NamedTuple):
    """The job file to load: its path (the name errors use) and, for stdin, its contents."""

    path: str
    data: bytes | None = None


def find_job_file(start: str) -> str:
    """The first of JOB_FILE_NAMES in `start` or the nearest parent folder holding one (as
    go-task and just look); relative to `start` when it lies there or above it."""
    start = os.path.abspath(start)
    folder = start
    while True:
        for name in JOB_FILE_NAMES:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return os.path.relpath(candidate, start)
        parent = os.path.dirname(folder)
        if parent == folder:
            raise UsageError(
                f"no job file found: looked for {', '.join(JOB_FILE_NAMES)} in {start} "
                f"and each parent folder up to {folder}; create one or pass -f FILE"
            )
        folder = parent


def names_a_job_file(word: str) -> bool:
    """Whether the first positional argument is the old `run FILE [JOB ...]` form's file:
    a path ending in .yml/.yaml, or any existing file given as a path (job names hold no `/`)."""
    if word.endswith(JOB_FILE_SUFFIXES) and "[" not in word:
        return True
    return "/" in word and "[" not in word and os.path.exists(word)


def resolve(file_option: str | None, positionals: list[str], cwd: str = ".") -> tuple[JobSource, list[str]]:
    """The job file the command line names and the positional words left for jobs."""
    if file_option == "-":
        return JobSource(STDIN_NAME, sys.stdin.buffer.read()), positionals
    if file_option is not None:
        return JobSource(file_option), positionals
    if positionals and names_a_job_file(positionals[0]):
        return JobSource(positionals[0]), positionals[1:]
    return JobSource(find_job_file(cwd)), positionals
