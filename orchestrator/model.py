"""The job file as plain frozen values: Job, JobFile and durations."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, NamedTuple

# The largest job file read: a bigger one is an error (loader) and never cached (jobcache).
MAX_FILE_BYTES = 64 * 1024 * 1024
_BLANKS = re.compile(r"[ \t]+")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in `250ms`, `30s`, `5m`, `1h30m` or a plain number; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        spec = text.strip()
        try:
            seconds = float(spec)
        except ValueError:
            parts = _DURATION_PART.findall(spec)
            if not parts or "".join(n + u for n, u in parts) != spec:
                raise ValueError(f"not a duration: {text!r}") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"not a duration: {text!r}")
    return seconds


def describe_seconds(seconds: float) -> str:
    """A duration as a person writes it: `250ms`, `2s`, `1.5s`, `1m30s`, `2h`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


# One empty mapping for every job that sets no resources, env or matrix: 100,000 jobs would
# otherwise carry 300,000 empty dicts and proxies (some 35 MB).
EMPTY_MAP: Mapping[str, Any] = MappingProxyType({})


def frozen_map(items: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(items)) if items else EMPTY_MAP


# Characters that make a word mean more than itself to /bin/sh (quoting, expansion,
# redirection, globbing, control), as GNU make's list, plus quotes and backslash.
_SHELL_SPECIAL = frozenset("#;&|<>(){}$`\\\"'*?[]~!^\n\r")
# First words that are shell syntax or builtins behaving unlike the program of that name.
_SHELL_FIRST_WORDS = frozenset(
    """
    . : [ [[ alias bg break case cd command continue do done echo elif else esac eval exec exit
    export fc fg fi for function getopts hash if in jobs kill local login logout printf pwd read
    readonly return select set shift source test then time times trap type typeset ulimit umask
    unalias unset until wait while
    """.split()
)


def plain_words(command: str) -> tuple[str, ...] | None:
    """The words of a command string when `sh -c` would do nothing but split it on blanks
    and run the first word as a program; None when the shell's meaning is needed."""
    if not command or not _SHELL_SPECIAL.isdisjoint(command):
        return None
    if any(char.isspace() and char not in " \t" for char in command):
        return None  # sh splits on blanks only; leave other white space to it
    words = tuple(word for word in _BLANKS.split(command) if word)
    if not words or words[0] in _SHELL_FIRST_WORDS or "=" in words[0]:
        return None
    return words


class Position(NamedTuple):
    """Where something was written: 1-based line and column in the job file."""

    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Job:
    """One runnable job after defaults and matrix expansion."""

    name: str
    run: str | tuple[str, ...]
    needs: tuple[str, ...] = ()
    resources: Mapping[str, int] = field(default_factory=frozen_map)
    host_resources: Mapping[str, int] = field(default_factory=frozen_map)  # per worker host (Dask)
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 0.0
    env: Mapping[str, str] = field(default_factory=frozen_map)
    cwd: str | None = None
    allow_failure: bool = False
    tags: tuple[str, ...] = ()
    description: str = ""
    shell: tuple[str, ...] | None = None  # argv prefix; the command string is appended
    matrix: Mapping[str, str] = field(default_factory=frozen_map)
    inputs: tuple[str, ...] = ()  # paths and globs relative to cwd: what the job reads
    outputs: tuple[str, ...] = ()  # what it makes; with outputs it can be up to date
    position: Position = Position()

    @cached_property
    def argv(self) -> tuple[str, ...]:
        """The argv to execute: a list as written, a string through its shell.

        Like make, a command string that the default shell would only split into words
        is exec'd directly, saving a shell per job; see `plain_words`."""
        if isinstance(self.run, tuple):
            return self.run
        if self.shell is None:
            words = plain_words(self.run)
            if words:
                return words
        return (*(self.shell or ("/bin/sh", "-c")), self.run)


@dataclass(frozen=True)
class JobFile:
    """A whole validated job file: jobs in file order, expanded and resolved."""

    path: str
    jobs: Mapping[str, Job]
    env: Mapping[str, str] = field(default_factory=frozen_map)
    resources: Mapping[str, int] = field(default_factory=frozen_map)
    version: int = 1

    @property
    def directory(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def tracks_files(self, names: Iterable[str]) -> bool:
        """Whether any of these jobs has inputs or outputs: else no up-to-date check is made
        (and the rooms that make one are never imported)."""
        return any(self.jobs[name].inputs or self.jobs[name].outputs for name in names)
