"""A loaded job file kept in the run state folder: a run of an unchanged file skips PyYAML.

Importing PyYAML and the loader is 25-40 ms of every run's start, and reading a big file
takes seconds (100,000 jobs: 3.5 s). A run keeps what it loaded in `cache/FILE.marshal`
beside its state, keyed by everything the load depends on: the file's bytes, the path it
was named by and its folder, the command line's NAME=VALUE words, the dotenv files it read
(or their absence), and orchestrate's own code and Python's version. Anything different,
or a cache that cannot be read, means a fresh load, which the next run finds.
"""

from __future__ import annotations

import marshal
import operator
import os
import sys
from _blake2 import blake2b  # hashlib's own, without OpenSSL (see hashing.py)
from collections.abc import Callable, Mapping
from dataclasses import fields
from importlib.machinery import PathFinder
from typing import Any

from orchestrator import __version__
from orchestrator.model import MAX_FILE_BYTES, Job, JobFile, Position, frozen_map

FORMAT = 1  # what a cached file holds; a new layout gets a new number
_JOB_FIELDS = tuple(field.name for field in fields(Job))
_POSITION = _JOB_FIELDS.index("position")
_job_values = operator.attrgetter(*_JOB_FIELDS)
# The mapping fields (read-only views: marshal writes their dicts), by their default.
_MAPPINGS = tuple(i for i, field in enumerate(fields(Job)) if field.default_factory is frozen_map)
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def load(path: str, variables: Mapping[str, str], cache: str, keep: bool = True) -> JobFile:
    """The job file at `path`, from `cache` when nothing it depends on has changed, else
    loaded (and, with `keep`, kept in `cache` for the next run). Errors are the loader's
    to report."""
    data = _read(path)
    key = None if data is None else _key(path, data, variables)
    if key is not None:
        found = _lookup(cache, key)
        if found is not None:
            return found
    from orchestrator import loader  # PyYAML: only when the cache has nothing

    if data is None:  # unreadable or too big: the loader says why
        return loader.load(path, variables)
    jobfile, sources = loader.load_tracked(data, path, variables)
    if keep and key is not None:
        _store(cache, key, sources, jobfile)
    return jobfile


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError):
        return None
    return data if len(data) <= MAX_FILE_BYTES else None


def _digest(data: bytes) -> bytes:
    return blake2b(data, digest_size=16).digest()


def _file_digest(path: str) -> bytes | None:
    """A dotenv file's digest; None when there is none (the loader reads that as empty)."""
    try:
        with open(path, "rb") as stream:
            return _digest(stream.read())
    except FileNotFoundError:
        return None


def _code_stamp() -> tuple[tuple[tuple[str, int, int], ...], ...]:
    """orchestrate's modules and PyYAML's as they are now: an edited checkout or an
    upgraded PyYAML never reads a cache the old code made."""
    return tuple(_folder_stamp(folder) for folder in (_PACKAGE, _yaml_folder()))


def _folder_stamp(folder: str) -> tuple[tuple[str, int, int], ...]:
    with os.scandir(folder) as entries:
        return tuple(
            sorted(
                (entry.name, (stat := entry.stat()).st_mtime_ns, stat.st_size)
                for entry in entries
                if entry.name.endswith((".py", ".so"))
            )
        )


def _yaml_folder() -> str:
    """Where `import yaml` would find PyYAML, found without importing it (that is the cost
    the cache saves)."""
    spec = PathFinder.find_spec("yaml")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("PyYAML not found")
    return str(spec.submodule_search_locations[0])


def _key(path: str, data: bytes, variables: Mapping[str, str]) -> tuple[Any, ...] | None:
    """Everything the load of `data` depends on besides the dotenv files; None when
    orchestrate's own code cannot be looked at (then nothing is cached)."""
    try:
        code = _code_stamp()
    except OSError:
        return None
    return (
        FORMAT,
        __version__,
        sys.version,
        code,
        path,
        os.path.abspath(path),
        tuple(sorted(variables.items())),
        _digest(data),
    )


def _lookup(cache: str, key: tuple[Any, ...]) -> JobFile | None:
    """The cached job file if its key is `key` and its dotenv files are as they were."""
    try:
        with open(cache, "rb") as stream:
            stored_key, sources, payload = marshal.loads(stream.read())
        if stored_key != key or any(_file_digest(name) != digest for name, digest in sources):
            return None
        return _decode(payload)
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        return None  # missing, unreadable, corrupt or from another layout: load afresh


def _store(cache: str, key: tuple[Any, ...], sources: tuple[str, ...], jobfile: JobFile) -> None:
    """Keep the loaded file for the next run; a folder that cannot be written keeps none."""
    temporary = f"{cache}.{os.getpid()}"
    try:
        watched = tuple((name, _file_digest(name)) for name in sources)
        blob = marshal.dumps((key, watched, _encode(jobfile)))
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(temporary, "wb") as stream:
            stream.write(blob)
        os.replace(temporary, cache)  # whole or not at all, with concurrent runs too
    except (OSError, ValueError):
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _once_each(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert`, called once per distinct object (the objects outlive it): a mapping many
    jobs share is converted once and stays shared."""
    done: dict[int, Any] = {}

    def once(item: Any) -> Any:
        found = done.get(id(item))
        if found is None:
            found = done[id(item)] = convert(item)
        return found

    return once


def _encode(jobfile: JobFile) -> tuple[Any, ...]:
    """Plain values marshal can write. A mapping many jobs share stays one dict, which
    marshal writes once and refers back to."""
    mapping = _once_each(dict)
    rows = []
    for job in jobfile.jobs.values():
        row = list(_job_values(job))
        for index in _MAPPINGS:
            row[index] = mapping(row[index])
        row[_POSITION] = tuple(row[_POSITION])
        rows.append(tuple(row))
    return jobfile.path, jobfile.version, mapping(jobfile.env), mapping(jobfile.resources), rows


def _decode(payload: tuple[Any, ...]) -> JobFile:
    path, version, env, resources, rows = payload
    mapping = _once_each(frozen_map)
    jobs = {}
    for row in rows:
        values = list(row)
        for index in _MAPPINGS:
            values[index] = mapping(values[index])
        values[_POSITION] = Position(*values[_POSITION])
        job = Job(*values)
        jobs[job.name] = job
    return JobFile(path, frozen_map(jobs), mapping(env), mapping(resources), version)
