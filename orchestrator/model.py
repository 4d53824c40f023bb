"""The job file as plain frozen values: Job, JobFile and durations."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

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


def frozen_map(items: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class Position:
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
    position: Position = Position()

    @property
    def argv(self) -> tuple[str, ...]:
        """The argv to execute: a list as written, a string through its shell."""
        if isinstance(self.run, tuple):
            return self.run
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
        import os

        return os.path.dirname(os.path.abspath(self.path))
