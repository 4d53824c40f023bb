"""Read a YAML job file into a validated JobFile; any problem is a JobFileError at FILE:LINE:COL."""

from __future__ import annotations

import gc
import io
import itertools
import json
import math
import os
import re
import shlex
import string
import sys
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.resolver import Resolver

from .errors import JobFileError, UsageError
from .hashing import is_glob
from .matrix import MatrixIndex, expansion_name
from .model import MAX_FILE_BYTES, NAME_PATTERN, Job, JobFile, Position, frozen_map, parse_duration

# libyaml parses about five times faster; the pure-Python parser is only a fallback.
_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PARSER_TAKES_BYTES = _PARSER is not yaml.SafeLoader

# Limits that keep hostile or runaway files to a few seconds and a few hundred MB.
MAX_BYTES = MAX_FILE_BYTES
MAX_NODES = 2_000_000  # YAML values parsed: about 2 s and 250 MB per million
MAX_VISITS = 3_000_000  # values read along the schema, counting every alias use and expansion
MAX_MERGE_DEPTH = 64

_CORE = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_CORE + t for t in ("str", "int", "float", "bool", "null"))
MAP, SEQ, MERGE, TIMESTAMP, VALUE = (_CORE + t for t in ("map", "seq", "merge", "timestamp", "value"))
_SCALAR_TAGS = {None, "!", STR, INT, FLOAT, BOOL, NULL, MERGE}
_STRING_TAGS = {STR, MERGE, VALUE}  # `<<` or `=` as a value is just text
_TYPE_NAMES = {
    STR: "a string",
    INT: "a number",
    FLOAT: "a number",
    BOOL: "a boolean",
    NULL: "null",
    TIMESTAMP: "a date",
}

_TOP_KEYS = ("version", "env", "dotenv", "resources", "defaults", "jobs")
_JOB_KEYS = (
    "run",
    "needs",
    "resources",
    "timeout",
    "retries",
    "retry_delay",
    "env",
    "dotenv",
    "cwd",
    "allow_failure",
    "tags",
    "description",
    "shell",
    "matrix",
    "host_resources",
    "inputs",
    "outputs",
)
# inputs and outputs too: what a job reads and makes is its own (relative to its own cwd),
# and one output shared by every job would be a duplicate.
_JOB_ONLY_KEYS = ("run", "needs", "matrix", "inputs", "outputs")
# Names other tools use for our keys: a table points the right way where difflib would not
# ("deps" is closer to "env" than to "needs"). A note follows where the meaning differs.
_KEY_ALIASES: dict[str, tuple[str, str]] = {
    "deps": ("needs", ""),
    "depends_on": ("needs", ""),
    "depends": ("needs", ""),
    "dependencies": ("needs", ""),
    "requires": ("needs", ""),
    "after": ("needs", ""),
    "cmd": ("run", ""),
    "command": ("run", ""),
    "script": ("run", ""),
    "cmds": ("run", " (one command per job: a list under run: is one command's words; join steps with &&)"),
    "commands": (
        "run",
        " (one command per job: a list under run: is one command's words; join steps with &&)",
    ),
    "dir": ("cwd", ""),
    "workdir": ("cwd", ""),
    "working_dir": ("cwd", ""),
    "working_directory": ("cwd", ""),
    "timeout_s": ("timeout", " (it takes 30s, 5m or a number of seconds)"),
    "timeout_seconds": ("timeout", " (it takes 30s, 5m or a number of seconds)"),
    "retry": ("retries", ""),
    "environment": ("env", ""),
    "vars": ("env", ""),
    "variables": ("env", ""),
    "desc": ("description", ""),
    "tag": ("tags", ""),
    "continue_on_error": ("allow_failure", ""),
    "ignore_error": ("allow_failure", ""),
    "ignore_errors": ("allow_failure", ""),
}
_DEFAULT_KEYS = tuple(key for key in _JOB_KEYS if key not in _JOB_ONLY_KEYS)

_ENV_NAME = re.compile(r"[^=\0]+")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")  # what libyaml counts as a new line
_EMPTY = frozen_map()
# $$, $NAME, ${NAME} and a $ that starts none of them, as string.Template reads them.
_PATH_VARIABLE = string.Template.pattern
_NULL_WORDS = {"", "~", "null", "Null", "NULL"}  # what YAML 1.1 reads as null when unquoted

SCALAR, LIST, MAPPING = "scalar", "list", "mapping"


def load(path: str, variables: Mapping[str, str] | None = None, data: bytes | None = None) -> JobFile:
    """Read and validate the job file at `path` (or `data`, read from stdin, named `path`).

    `variables` are the command line's NAME=VALUE words: every job's env gets them above
    the file's layers and below its matrix values."""
    return load_text(_read_bytes(path) if data is None else data, path, variables)


def load_for_process(
    path: str, variables: Mapping[str, str] | None = None, data: bytes | None = None
) -> JobFile:
    """`load` for a command whose job file lives until the process ends: the loaded model
    is frozen out of the cyclic GC's sight, which would otherwise rescan 100,000 jobs at
    every full collection for the rest of the run."""
    jobfile = load(path, variables, data)
    gc.freeze()
    return jobfile


def load_text(data: bytes | str, path: str, variables: Mapping[str, str] | None = None) -> JobFile:
    """Validate job file contents; `path` names it in errors and anchors relative `cwd`s
    and dotenv files (a path without a folder, like `<stdin>`, anchors them in the current one)."""
    return load_tracked(data, path, variables)[0]


def load_tracked(
    data: bytes | str, path: str, variables: Mapping[str, str] | None = None
) -> tuple[JobFile, tuple[str, ...]]:
    """`load_text`, and the dotenv files it read (absolute paths; missing ones too): with the
    contents, all that the loaded file depends on, for a cache to watch (jobcache)."""
    # The GC would rescan the growing node tree again and again: 5x slower on big files.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        reader = _Reader(path, variables)
        return reader.read_file(_check_source(data, path)), tuple(reader.dotenv_files)
    finally:
        if gc_was_enabled:
            gc.enable()


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read(MAX_BYTES + 1)  # one byte more tells "too big" without reading all
    except IsADirectoryError:
        problem = f"{path} is a directory; pass the path of a YAML job file"
    except FileNotFoundError:
        problem = f"no such file: {path}"
    except PermissionError:
        problem = f"permission denied: cannot read {path}"
    except OSError as error:
        problem = f"cannot read {path}: {error.strerror or error}"
    except ValueError as error:  # e.g. a NUL byte in the path
        problem = f"cannot open {path!r}: {error}"
    # No line or column: nothing of the file was read, so there is no spot to point at.
    raise UsageError(problem)


def _check_source(data: bytes | str, path: str) -> bytes | str:
    """The text as the parser wants it, after checking its size and that it is UTF-8."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_BYTES:
        raise JobFileError(
            path, 1, 1, f"the job file is larger than {MAX_BYTES >> 20} MB; split it into smaller files"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        before = raw[: error.start].decode("utf-8")
        line, column = _line_column(before, len(before))
        raise JobFileError(
            path,
            line,
            column,
            f"the job file is not UTF-8 text: byte 0x{raw[error.start]:02x} "
            "cannot start a character here; save the file as UTF-8",
        ) from None
    return raw if _PARSER_TAKES_BYTES else text


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character `index`, counting line breaks as libyaml does."""
    line, line_start = 1, 0
    for match in _LINE_BREAK.finditer(text, 0, index):
        line, line_start = line + 1, match.end()
    return line, index - line_start + 1


class _Node:
    """One composed YAML value; an alias is a new node over its anchor's contents.

    A node keeps only its 0-based line and column, not the parser's Mark: a million nodes
    with a Mark each cost some 80 MB more, and a Mark's other fields are never read."""

    __slots__ = ("kind", "tag", "value", "line", "column", "plain")

    def __init__(
        self, kind: str, tag: str | None, value: Any, line: int, column: int, plain: bool = False
    ) -> None:
        self.kind = kind
        self.tag = tag  # an explicit tag, or the resolved one once asked for
        self.value = value  # str; tuple of nodes; or key, value, key, value, ... nodes
        self.line = line
        self.column = column
        self.plain = plain  # unquoted and untagged: its type comes from how it looks


def _compose(source: bytes | str, path: str) -> tuple[_Node | None, set[int]]:
    """Build the node tree from parser events (yaml.compose cannot be stopped part way);
    with it, the ids of the collections that aliases may share (the anchored ones)."""
    try:
        parser = _PARSER(source)  # the Python reader checks every character here
    except yaml.YAMLError as error:
        raise _syntax_error(error, source, path) from None
    try:
        composer = _Composer(path)
        return composer.run(parser.get_event), composer.anchored
    except yaml.YAMLError as error:
        raise _syntax_error(error, source, path) from None
    finally:
        parser.dispose()


class _Composer:
    """Turns parser events into _Nodes, refusing past MAX_NODES so memory stays bounded."""

    def __init__(self, path: str):
        self.path = path
        self.anchors: dict[str, _Node] = {}
        self.open: list[_Node] = []  # collections still being read, innermost last
        self.open_anchors: list[str | None] = []
        self.root: _Node | None = None
        self.anchored: set[int] = set()  # id(value) of every anchored collection
        self.documents = 0
        self.count = 0
        # The line of the last value: the values written on one line share one int object
        # (libyaml makes a new one per Mark, and lines past 256 are not cached by Python).
        self.line = 0

    def run(self, get_event: Callable[[], Any]) -> _Node | None:
        open_collections, open_anchors = self.open, self.open_anchors
        intern = sys.intern  # names and words repeat (run, needs, true, each job's name)
        node_class, scalar = _Node, SCALAR
        while True:
            event = get_event()
            cls = event.__class__
            if cls is ScalarEvent and not event.tag and not event.anchor and open_collections:
                # Most values of a file take this path or the next two, so they skip the
                # general one's calls.
                self.count += 1
                if self.count > MAX_NODES:
                    self.refuse(event)
                mark = event.start_mark
                line = mark.line
                if line == self.line:
                    line = self.line
                else:
                    self.line = line
                open_collections[-1].value.append(
                    node_class(scalar, None, intern(event.value), line, mark.column, event.implicit[0])
                )
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                node = open_collections.pop()
                node.value = tuple(node.value)  # a list keeps room to grow: a third more
                anchor = open_anchors.pop()
                # Registering only now makes a self-referencing alias an error, not an endless value.
                if anchor is not None:
                    self.anchors[anchor] = node
                    self.anchored.add(id(node.value))
            elif (
                (cls is MappingStartEvent or cls is SequenceStartEvent) and not event.tag and open_collections
            ):
                self.count += 1
                if self.count > MAX_NODES:
                    self.refuse(event)
                mark = event.start_mark
                line = mark.line
                if line == self.line:
                    line = self.line
                else:
                    self.line = line
                kind = MAPPING if cls is MappingStartEvent else LIST
                node = node_class(kind, None, [], line, mark.column)
                open_collections[-1].value.append(node)
                open_collections.append(node)
                open_anchors.append(event.anchor)
            elif cls is ScalarEvent:
                self.add(self.scalar(event), event)
            elif cls is MappingStartEvent:
                self.start(event, MAPPING)
            elif cls is SequenceStartEvent:
                self.start(event, LIST)
            elif cls is AliasEvent:
                self.add(self.alias(event), event)
            elif cls is DocumentStartEvent:
                self.document(event)
            elif cls is StreamEndEvent:
                return self.root

    def line_of(self, event: Any) -> int:
        """The event's line, as the object shared with the values before it on that line."""
        line: int = event.start_mark.line
        if line == self.line:
            return self.line
        self.line = line
        return line

    def add(self, node: _Node, event: Any) -> None:
        """Put a node into the collection being read (or make it the root)."""
        self.count += 1
        if self.count > MAX_NODES:
            self.refuse(event)
        if self.open:
            self.open[-1].value.append(node)
        else:
            self.root = node

    def refuse(self, event: Any) -> NoReturn:
        self.fail(event, f"the job file has more than {MAX_NODES:,} YAML values; split it into smaller files")

    def scalar(self, event: Any) -> _Node:
        self.check_tag(event, _SCALAR_TAGS)
        explicit = event.tag not in (None, "!")
        node = _Node(
            SCALAR,
            event.tag if explicit else None,
            sys.intern(event.value),
            self.line_of(event),
            event.start_mark.column,
            not explicit and event.implicit[0],
        )
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node

    def start(self, event: Any, kind: str) -> None:
        self.check_tag(event, {None, "!", MAP if kind == MAPPING else SEQ})
        node = _Node(kind, None, [], self.line_of(event), event.start_mark.column)
        self.add(node, event)
        self.open.append(node)
        self.open_anchors.append(event.anchor)

    def alias(self, event: Any) -> _Node:
        node = self.anchors.get(event.anchor)
        if node is not None:
            # A new node over the same contents, so errors point at this use of the alias.
            return _Node(
                node.kind, node.tag, node.value, self.line_of(event), event.start_mark.column, node.plain
            )
        if event.anchor in self.open_anchors:
            self.fail(event, f"alias *{event.anchor} refers to a value that contains it")
        self.fail(event, f"unknown alias *{event.anchor}; define &{event.anchor} before using it")

    def document(self, event: Any) -> None:
        self.documents += 1
        if self.documents > 1:
            self.fail(event, "the job file holds more than one YAML document; remove the extra ---")

    def check_tag(self, event: Any, allowed: Container[str | None]) -> None:
        if event.tag not in allowed:
            tag = event.tag.replace(_CORE, "!!")
            self.fail(
                event,
                f'tag "{tag}" is not allowed here: a job file holds only strings, '
                "numbers, booleans, lists and mappings",
            )

    def fail(self, event: Any, message: str) -> NoReturn:
        mark = event.start_mark
        raise JobFileError(self.path, mark.line + 1, mark.column + 1, message)


def _syntax_error(error: yaml.YAMLError, source: bytes | str, path: str) -> JobFileError:
    """A parser error at the spot it names."""
    if isinstance(error, yaml.reader.ReaderError):
        # libyaml counts bytes, the Python reader characters.
        prefix = source[: error.position]
        text = prefix.decode("utf-8", "replace") if isinstance(prefix, bytes) else prefix
        line, column = _line_column(text, len(text))
        return JobFileError(path, line, column, f"invalid character in the job file: {error.reason}")
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = f"invalid YAML: {getattr(error, 'problem', None) or error}"
    context, where = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and where:
        message += f" ({context} at line {where.line + 1}, column {where.column + 1})"
    if _char_at(source, mark) == "\t":
        message += "; indent with spaces, not tabs"
    return JobFileError(path, line, column, message)


def _char_at(source: bytes | str, mark: Any) -> str:
    if mark is None:
        return ""
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    lines = _LINE_BREAK.split(text)
    if mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return ""
    return str(lines[mark.line][mark.column])


@dataclass(slots=True)
class _Draft:
    """A job read from the file whose needs are not resolved yet."""

    fields: Mapping[str, Any]  # Job keyword arguments, all but name and needs; emptied once built
    needs: tuple[_Node, ...]  # each need as written (its text is the node's value)
    paths: Mapping[str, tuple[_Node, ...]]  # "inputs"/"outputs" -> the item nodes, in order


class _Reader:
    """Walks the node tree along the schema, converting values and checking them at their node."""

    def __init__(self, path: str, variables: Mapping[str, str] | None = None):
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        self.variables = dict(variables or {})
        self.dotenv_files: dict[str, dict[str, str]] = {}  # absolute path -> its values, read once
        self.visits = 0
        # id(anchored mapping contents) -> entries: what aliases share is flattened once.
        # Anything else is reached once, and kept no longer than it is read.
        self.flattened: dict[int, dict[str, tuple[_Node, _Node]]] = {}
        self.plain_tags: dict[str, str] = {}
        self.durations: dict[tuple[type, Any], float] = {}
        self.resolver = Resolver()
        self.constructor = SafeConstructor()
        self.declared: dict[str, int] = {}
        self.defaults: dict[str, Any] = {}
        self.base_env: dict[str, str] = {}
        self.drafts: dict[str, _Draft] = {}
        self.makes_outputs = False  # whether any job has outputs (else no job's inputs are made)
        self.names = MatrixIndex()  # every job and matrix expansion, for resolving needs
        self.anchored: set[int] = set()  # id(value) of collections that aliases may share
        # (job, need) -> the input that made it: its node and its path with variables replaced
        self.auto_needs: dict[tuple[str, str], tuple[_Node, str]] = {}

    # -- the file -------------------------------------------------------------------------

    def read_file(self, source: bytes | str) -> JobFile:
        # Only this frame holds the tree, so it can let it go part way (see below).
        root, self.anchored = _compose(source, self.path)
        if root is None or (root.kind == SCALAR and self.tag(root) == NULL):
            raise JobFileError(
                self.path, 1, 1, "the job file is empty; it needs at least a jobs: mapping of job name to job"
            )
        top = self.entries(root, "the job file", "a mapping with a jobs: key")
        self.check_keys(top, _TOP_KEYS, "at the top level", top["jobs"][1] if "jobs" in top else None)
        version = self.read_version(top["version"][1]) if "version" in top else 1
        file_env = self.read_env(top["env"][1], "env") if "env" in top else {}
        if "resources" in top:
            self.declared = self.read_declared(top["resources"][1])
        dotenv = self.read_dotenv(top["dotenv"][1], "the job file") if "dotenv" in top else {}
        self.base_env = {**dotenv, **file_env}
        if "defaults" in top:
            self.read_defaults(top["defaults"][1])
        if "jobs" not in top:
            self.fail(root, "the job file has no jobs: add a jobs: mapping of job name to job")
        self.read_jobs(top["jobs"][1])
        # What is left of the tree (the job names, what aliases share) goes before the jobs
        # are built; the drafts keep the few nodes errors may still point at.
        del root, top
        self.flattened.clear()
        jobs = self.resolve_jobs()
        self.check_cycles(jobs)
        return JobFile(
            self.path,
            jobs=frozen_map(jobs),
            env=frozen_map(file_env),
            resources=frozen_map(self.declared),
            version=version,
        )

    def read_version(self, node: _Node) -> int:
        value = self.scalar_value(node)
        if type(value) is not int or value != 1:
            self.fail(
                node,
                f"version must be 1, got {self.describe(node)}; this orchestrate reads version 1 job files",
            )
        return value

    def read_declared(self, node: _Node) -> dict[str, int]:
        declared = {}
        entries = self.entries(node, "resources", "a mapping of name to units")
        for name, (key, value) in entries.items():
            self.check_name(key, name, "resource name")
            declared[name] = self.integer(value, f'the capacity of resource "{name}"', 1)
        return declared

    def read_defaults(self, node: _Node) -> None:
        entries = self.entries(node, "defaults", "a mapping of job keys")
        for name, (key, _) in entries.items():
            if name in _JOB_ONLY_KEYS:
                self.fail(key, f'defaults cannot set "{name}": give each job its own {name}:')
        self.check_keys(entries, _DEFAULT_KEYS, "in defaults")
        for name, (_, value) in entries.items():
            if name == "env":
                self.base_env.update(self.read_env(value, "env of defaults"))
            else:
                self.defaults[name] = _FIELD_READERS[name](self, value, "defaults")

    # -- jobs -----------------------------------------------------------------------------

    def read_jobs(self, node: _Node) -> None:
        entries = self.entries(node, "jobs", "a mapping of job name to job")
        if not entries:
            self.fail(node, "jobs is empty: add at least one job, e.g. test: {run: make test}")
        # Most jobs add nothing to the environment: they share one mapping.
        shared_env = self.job_env(self.defaults.get("dotenv", {}), {})
        frozen_shared_env = frozen_map(shared_env)
        for name, (key, value) in entries.items():
            self.check_not_misplaced(name, key, value, node)
            self.read_job(name, key, value, shared_env, frozen_shared_env)
            if id(value.value) not in self.anchored:
                # Read, and no alias shares it: its nodes go now (bar those the draft keeps
                # for errors), not with the whole tree, so tree and drafts do not add up.
                value.value = ()

    def job_env(self, dotenv: dict[str, str], own: dict[str, str]) -> dict[str, str]:
        """A job's environment below its matrix values: the file's dotenv and env and
        defaults.env (in base_env), its own dotenv and env, then the command line's NAME=VALUE."""
        return {**self.base_env, **dotenv, **own, **self.variables}

    def read_job(
        self,
        name: str,
        key: _Node,
        node: _Node,
        shared_env: dict[str, str],
        frozen_shared_env: Mapping[str, str],
    ) -> None:
        self.check_name(key, name, "job name")
        owner = f'job "{name}"'
        entries = self.entries(node, owner, "a mapping with a run: key")
        self.check_keys(entries, _JOB_KEYS, f"in {owner}")
        if "run" not in entries:
            self.fail(key, f"{owner} has no run: give it a command, e.g. run: make test")
        fields = dict(self.defaults)
        own_env = None
        for field, (_, value) in entries.items():
            if field == "env":
                own_env = self.read_env(value, f"env of {owner}")
            elif field in _FIELD_READERS:  # needs and matrix are read below
                fields[field] = _FIELD_READERS[field](self, value, owner)
        dotenv = fields.pop("dotenv", {})  # the job's own, else the one of defaults
        env = shared_env
        if own_env is not None or "dotenv" in entries:
            env = self.job_env(dotenv, own_env or {})
        needs = self.read_needs(entries["needs"][1], owner) if "needs" in entries else ()
        fields["position"] = Position(key.line + 1, key.column + 1)
        paths: Mapping[str, tuple[_Node, ...]] = _EMPTY
        if "inputs" in entries or "outputs" in entries:  # job-only keys: never from defaults
            paths = {field: entries[field][1].value for field in ("inputs", "outputs") if field in entries}
            self.makes_outputs = self.makes_outputs or "outputs" in entries
        if "matrix" in entries:
            axes = self.read_matrix(entries["matrix"][1], owner)
            self.expand(name, fields, env, needs, axes, paths)
        else:
            fields["env"] = frozen_shared_env if env is shared_env else frozen_map(env)
            if paths:
                self.expand_paths(fields, paths, fields["env"], name)
            self.drafts[name] = _Draft(fields, needs, paths)
            self.names.add(name, _EMPTY)

    def expand(
        self,
        name: str,
        fields: dict[str, Any],
        env: dict[str, str],
        needs: tuple[_Node, ...],
        axes: list[tuple[str, list[str]]],
        paths: Mapping[str, tuple[_Node, ...]],
    ) -> None:
        """One job per combination of matrix values, named like build[ARCH=arm64,OS=linux]."""
        keys = [key for key, _ in axes]
        for values in itertools.product(*(values for _, values in axes)):
            matrix = frozen_map(dict(zip(keys, values, strict=True)))
            expanded = expansion_name(name, matrix)
            job_fields = {**fields, "env": frozen_map({**env, **matrix}), "matrix": matrix}
            self.expand_paths(job_fields, paths, job_fields["env"], expanded, name)
            self.drafts[expanded] = _Draft(job_fields, needs, paths)
            self.names.add(expanded, matrix)

    def expand_paths(
        self,
        fields: dict[str, Any],
        paths: Mapping[str, tuple[_Node, ...]],
        env: Mapping[str, str],
        name: str,
        written_name: str | None = None,
    ) -> None:
        """Replace $NAME and ${NAME} in the job's inputs and outputs with the environment the
        file gives it (matrix values included; never the caller's, so a path is the same
        whoever runs the file), and $$ with $; before outputs are matched to inputs."""
        for field, nodes in paths.items():
            written: tuple[str, ...] = fields[field]
            if not any("$" in path for path in written):
                continue
            owner = f'job "{written_name or name}"'
            expanded: dict[str, _Node] = {}
            for path, node in zip(written, nodes, strict=True):
                text = self.expand_path(path, node, env, field[:-1], owner) if "$" in path else path
                if not text:
                    self.fail(
                        node,
                        f'{field[:-1]} "{path}" of {owner} is empty once its variables are '
                        "replaced; it must name a path",
                    )
                if text in expanded:
                    self.fail(
                        node,
                        f'"{text}" is listed twice in {field} of job "{name}" (as '
                        f'"{expanded[text].value}" and "{path}"); list each path once',
                    )
                expanded[text] = node
            fields[field] = tuple(expanded)

    def expand_path(self, path: str, node: _Node, env: Mapping[str, str], kind: str, owner: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match["escaped"] is not None:
                return "$"
            variable = match["named"] or match["braced"]
            if variable is None:
                self.fail(
                    node,
                    f'a "$" in {kind} "{path}" of {owner} starts no variable name: write $$ for a '
                    "literal $, $NAME or ${NAME} for a variable",
                )
            if variable not in env:
                self.fail(
                    node,
                    f'unknown variable {variable} in {kind} "{path}" of {owner}: define it in env or '
                    "matrix, or write $$ for a literal $",
                )
            return env[variable]

        return _PATH_VARIABLE.sub(replace, path)

    def read_matrix(self, node: _Node, owner: str) -> list[tuple[str, list[str]]]:
        what = f"matrix of {owner}"
        entries = self.entries(node, what, "a mapping of variable to values")
        if not entries:
            self.fail(node, f"{what} is empty; give it a variable, e.g. ARCH: [x86_64, arm64]")
        axes = []
        for name, (key, value) in entries.items():
            self.check_env_name(key, name, what)
            values: dict[str, _Node] = {}
            for item in self.items(value, f"{name} in the {what}", "a list of values"):
                text = self.env_value(item, f"a value of {name} in the {what}")
                if text in values:
                    self.fail(item, f'"{text}" appears twice in {name} in the {what}')
                values[text] = item
            if not values:
                self.fail(value, f"{name} in the {what} has no values; list at least one")
            axes.append((name, list(values)))
        size = math.prod(len(values) for _, values in axes)
        if size > MAX_VISITS // 10:
            self.fail(node, f"{what} expands to {size:,} jobs; the limit is {MAX_VISITS // 10:,}")
        self.charge(node, size)
        return axes

    def read_needs(self, node: _Node, owner: str) -> tuple[_Node, ...]:
        """The need nodes as written, each checked to be a word (its value is its text)."""
        what = f"needs of {owner}"
        items = self.items(node, what, "a list of job names, e.g. [build]")
        for item in items:
            self.word(item, what)
        return items

    # -- needs and cycles -----------------------------------------------------------------

    def resolve_jobs(self) -> dict[str, Job]:
        jobs = {}
        made_by = self.output_makers() if self.makes_outputs else {}
        for name, draft in self.drafts.items():
            needs: list[str] = []
            for node in draft.needs:
                found = self.resolve_need(node.value, node)
                self.charge(node, len(found))
                needs.extend(found)
            if made_by:
                needs.extend(self.input_makers(name, draft, made_by))
            jobs[name] = Job(name=name, needs=tuple(dict.fromkeys(needs)), **draft.fields)
            draft.fields = _EMPTY  # the Job holds them now; a cycle report needs only the needs
        return jobs

    def literal_paths(self, draft: _Draft, field: str) -> Iterator[tuple[str, str, _Node]]:
        """The literal (not glob) paths of a job's inputs or outputs: absolute, as the job
        has it (its variables replaced) and the node that wrote it."""
        base = draft.fields.get("cwd") or self.directory
        for path, node in zip(draft.fields.get(field, ()), draft.paths.get(field, ()), strict=True):
            if not is_glob(path):
                yield os.path.normpath(os.path.join(base, path)), path, node

    def output_makers(self) -> dict[str, tuple[str, _Node]]:
        """Which job makes each literal output; one file made by two jobs is an error."""
        made_by: dict[str, tuple[str, _Node]] = {}
        for name, draft in self.drafts.items():
            for path, text, node in self.literal_paths(draft, "outputs"):
                if path in made_by:
                    other, first = made_by[path]
                    self.fail(
                        node,
                        f'output {_as_written(node, text)} of job "{name}" is also an output of '
                        f'job "{other}" (line {first.line + 1}); one job must make each file: '
                        "remove one of them",
                    )
                made_by[path] = (name, node)
        return made_by

    def input_makers(self, name: str, draft: _Draft, made_by: dict[str, tuple[str, _Node]]) -> list[str]:
        """The jobs whose literal outputs are this job's literal inputs: needs it gets by
        itself, as in ninja."""
        found = []
        for path, text, node in self.literal_paths(draft, "inputs"):
            maker = made_by.get(path)
            if maker is not None and maker[0] != name:
                found.append(maker[0])
                self.auto_needs.setdefault((name, maker[0]), (node, text))
        return found

    def resolve_need(self, text: str, node: _Node) -> list[str]:
        """A job, a matrix job's expansions, or those a selector like build[ARCH=arm64] picks."""
        found = self.names.resolve(text)
        if not found:
            hint = self.names.values_of(text) or _suggest(
                text, self.names.names_to_suggest(), "no job has that name"
            )
            self.fail(node, f'unknown need "{text}"; {hint}')
        return found

    def check_cycles(self, jobs: dict[str, Job]) -> None:
        # graphlib builds a node object and a successor list per job (40 MB for 100,000,
        # the peak of a load): it is asked only once a walk along the needs found a cycle,
        # and it still picks the cycle reported, as it always did.
        if not _has_cycle(jobs):
            return
        try:
            TopologicalSorter({name: job.needs for name, job in jobs.items()}).prepare()
        except CycleError as error:
            self.report_cycle(error.args[1])

    def report_cycle(self, found: list[str]) -> NoReturn:
        # graphlib lists a cycle in run order; "a -> b" here reads "a needs b".
        members = found[::-1][:-1]
        order = {name: index for index, name in enumerate(self.drafts)}
        start = min(range(len(members)), key=lambda i: order[members[i]])
        cycle = members[start:] + members[:start]
        first, second = cycle[0], (cycle + cycle)[1]
        node = next(
            (node for node in self.drafts[first].needs if second in self.resolve_need(node.value, node)),
            None,
        )
        how = ""
        if node is None:  # a need that an input made by that job added
            node, text = self.auto_needs[(first, second)]
            how = (
                f' (job "{first}" needs "{second}" because its input {_as_written(node, text)} '
                "is an output of it)"
            )
        if len(cycle) > 12:  # thousands of names would bury the message
            cycle = cycle[:8] + [f"... ({len(cycle) - 10:,} more)"] + cycle[-2:]
        self.fail(
            node,
            f"dependency cycle: {' -> '.join(cycle + [first])}{how}; "
            "each job needs the next, so none can start: remove one of these needs",
        )

    # -- job fields -----------------------------------------------------------------------

    def read_run(self, node: _Node, owner: str) -> str | tuple[str, ...]:
        what = f"run of {owner}"
        if node.kind == LIST:
            argv = tuple(self.word(item, what) for item in self.items(node, what, ""))
            if not argv:
                self.fail(
                    node, f"{what} is an empty list; give a command and its arguments, e.g. [pytest, -q]"
                )
            return argv
        command = self.text(node, what, "a string or a list of strings")
        if not command.strip():
            self.fail(node, f"{what} is empty; give it a command, e.g. run: make test")
        return command

    def read_resources(self, node: _Node, owner: str) -> Mapping[str, int]:
        what = f"resources of {owner}"
        demand = {}
        if node.kind == LIST:
            for item in self.items(node, what, ""):
                name = self.word(item, what)
                if name in demand:
                    self.fail(
                        item,
                        f'resource "{name}" is listed twice in {what}; write {{{name}: 2}} to take 2 units',
                    )
                demand[name] = self.check_demand(item, item, name, 1, owner)
        else:
            entries = self.entries(node, what, "a list of names or a mapping of name to units")
            for name, (key, value) in entries.items():
                units = self.integer(value, f'units of "{name}" in {what}', 1)
                demand[name] = self.check_demand(key, value, name, units, owner)
        return frozen_map(demand) if demand else _EMPTY

    def read_host_resources(self, node: _Node, owner: str) -> Mapping[str, int]:
        """What one worker host must offer (Dask worker resources); nothing to declare here."""
        what = f"host_resources of {owner}"
        entries = self.entries(node, what, "a mapping of name to units, e.g. {gpu: 1}")
        demand = {
            name: self.integer(value, f'units of "{name}" in {what}', 1)
            for name, (_, value) in entries.items()
        }
        return frozen_map(demand) if demand else _EMPTY

    def check_demand(self, name_node: _Node, units_node: _Node, name: str, units: int, owner: str) -> int:
        if name not in self.declared:
            hint = _suggest(name, self.declared, f"add it there, e.g. {name}: 1")
            self.fail(name_node, f'resource "{name}" is not declared under resources: {hint}')
        if units > self.declared[name]:
            asks = "ask" if owner == "defaults" else "asks"
            self.fail(
                units_node,
                f'{owner} {asks} for {units} units of "{name}" but it has '
                f"{self.declared[name]}; it could never start",
            )
        return units

    def read_timeout(self, node: _Node, owner: str) -> float | None:
        if node.kind == SCALAR and self.tag(node) == NULL:
            return None  # lets a job drop a timeout from defaults
        seconds = self.duration(node, f"timeout of {owner}")
        if seconds <= 0:
            self.fail(node, f"timeout of {owner} must be more than 0; use null for no limit")
        return seconds

    def read_retries(self, node: _Node, owner: str) -> int:
        return self.integer(node, f"retries of {owner}", 0)

    def read_retry_delay(self, node: _Node, owner: str) -> float:
        return self.duration(node, f"retry_delay of {owner}")

    def read_cwd(self, node: _Node, owner: str) -> str:
        cwd = self.text(node, f"cwd of {owner}")
        if not cwd:
            self.fail(node, f"cwd of {owner} is empty; leave it out to run beside the job file")
        return os.path.normpath(os.path.join(self.directory, cwd))

    def read_allow_failure(self, node: _Node, owner: str) -> bool:
        value = self.scalar_value(node)
        if type(value) is not bool:
            self.fail(node, f"allow_failure of {owner} must be true or false, got {self.describe(node)}")
        return value

    def read_tags(self, node: _Node, owner: str) -> tuple[str, ...]:
        what = f"tags of {owner}"
        items = self.items(node, what, "a list of tags, e.g. [slow]")
        tags = [self.word(item, what) for item in items]
        for item, tag in zip(node.value, tags, strict=True):
            self.check_name(item, tag, "tag")
        return tuple(dict.fromkeys(tags))

    def read_inputs(self, node: _Node, owner: str) -> tuple[str, ...]:
        return self.read_paths(node, f"inputs of {owner}")

    def read_outputs(self, node: _Node, owner: str) -> tuple[str, ...]:
        return self.read_paths(node, f"outputs of {owner}")

    def read_paths(self, node: _Node, what: str) -> tuple[str, ...]:
        """Paths and globs (`**` recursive), relative to the job's cwd."""
        paths: dict[str, _Node] = {}
        for item in self.items(node, what, "a list of paths or globs, e.g. [src/*.c]"):
            path = self.word(item, what)
            if not path:
                self.fail(item, f"an item of {what} is empty; give a path or a glob, e.g. src/*.c")
            if path in paths:
                self.fail(item, f'"{path}" is listed twice in {what}')
            paths[path] = item
        return tuple(paths)

    def read_description(self, node: _Node, owner: str) -> str:
        return self.text(node, f"description of {owner}")

    def read_shell(self, node: _Node, owner: str) -> tuple[str, ...]:
        what = f"shell of {owner}"
        if node.kind == LIST:
            argv = tuple(self.word(item, what) for item in self.items(node, what, ""))
        else:
            try:  # "bash -eu" is a shell and its flags; the command follows -c
                argv = (*shlex.split(self.text(node, what, "a string or a list of strings")), "-c")
            except ValueError as error:
                self.fail(node, f"{what} cannot be split into words: {error}")
        if not argv or argv == ("-c",):
            self.fail(node, f"{what} is empty; give a shell, e.g. shell: bash")
        return argv

    def read_dotenv(self, node: _Node, owner: str) -> dict[str, str]:
        """The variables of the listed KEY=VALUE files; a missing file is skipped (as go-task
        does) and, as there, the first file that sets a variable wins."""
        what = f"dotenv of {owner}"
        values: dict[str, str] = {}
        for item in self.items(node, what, "a list of files, e.g. [.env]"):
            name = self.word(item, what)
            if not name:
                self.fail(item, f"an item of {what} is empty; give a file name, e.g. .env")
            for variable, value in self.dotenv_file(item, name).items():
                values.setdefault(variable, value)
        return values

    def dotenv_file(self, node: _Node, name: str) -> dict[str, str]:
        path = os.path.normpath(os.path.join(self.directory, name))
        found = self.dotenv_files.get(path)
        if found is None:
            shown = os.path.join(os.path.dirname(self.path), name)  # as the user would write it
            found = self.dotenv_files[path] = self.parse_dotenv(node, path, shown)
        return found

    def parse_dotenv(self, node: _Node, path: str, shown: str) -> dict[str, str]:
        from dotenv.main import resolve_variables
        from dotenv.parser import parse_stream

        try:
            with open(path, encoding="utf-8") as stream:
                text = stream.read()
        except FileNotFoundError:
            return {}
        except UnicodeDecodeError:
            self.fail(node, f"dotenv file {shown} is not UTF-8 text; save it as UTF-8")
        except OSError as error:
            self.fail(node, f"cannot read dotenv file {shown}: {error.strerror or error}")
        pairs = []
        for binding in parse_stream(io.StringIO(text)):
            # A binding starts with the blank lines before it; its own line comes after them.
            text = binding.original.string
            line = binding.original.line + text[: len(text) - len(text.lstrip())].count("\n")
            if binding.error:
                raise JobFileError(
                    shown,
                    line,
                    1,
                    "cannot read this line as NAME=VALUE: quote a value holding spaces or #, "
                    "and close every quote",
                )
            if binding.key is not None and binding.value is not None:  # a bare NAME sets nothing
                if "\0" in binding.value:
                    raise JobFileError(shown, line, 1, f"{binding.key} contains a NUL character")
                pairs.append((binding.key, binding.value))
        # ${NAME} expands from earlier lines of the file, then the caller's environment.
        return {key: value or "" for key, value in resolve_variables(pairs, override=True).items()}

    def read_env(self, node: _Node, what: str) -> dict[str, str]:
        env = {}
        entries = self.entries(node, what, "a mapping of variable to value")
        for name, (key, value) in entries.items():
            self.check_env_name(key, name, what)
            env[name] = self.env_value(value, f"{name} in {what}")
        return env

    # -- checks -----------------------------------------------------------------------------

    def check_keys(
        self,
        entries: dict[str, tuple[_Node, _Node]],
        allowed: tuple[str, ...],
        where: str,
        jobs: _Node | None = None,
    ) -> None:
        """Every key is allowed here; `jobs` (at the top level) lets a job key that slipped
        out of its job say which job it probably belongs to."""
        for name, (key, _) in entries.items():
            if name in allowed:
                continue
            meant, note = _KEY_ALIASES.get(name, (name, ""))
            if meant in allowed:
                hint = f'did you mean "{meant}"?{note}'
            elif meant in _JOB_KEYS:
                hint = self.misplaced_hint(name, key, jobs)
            else:
                hint = _suggest(name, allowed, "expected one of: " + ", ".join(allowed))
            self.fail(key, f'unknown key "{name}" {where}; {hint}')

    def misplaced_hint(self, name: str, key: _Node, jobs: _Node | None, how: str = "under that job") -> str:
        """For a job key written too far out: the job just above it, where it likely belongs."""
        meant = _KEY_ALIASES.get(name, (name, ""))[0]
        rename = f" and call it {meant}" if meant != name else ""
        above = None
        if jobs is not None and jobs.kind == MAPPING:
            before = [(k.line, k.value) for k in jobs.value[::2] if k.line < key.line]
            above = max(before)[1] if before else None
        if above is None:
            return f"{meant} is a job key: indent it under a job in jobs:{rename}"
        return f'it probably belongs to the job above, "{above}": indent it {how}{rename}'

    def check_not_misplaced(self, name: str, key: _Node, node: _Node, jobs: _Node) -> None:
        """A job key directly under jobs: reads as a job of that name; say what happened."""
        meant = _KEY_ALIASES.get(name, (name, ""))[0]
        if meant not in _JOB_KEYS:
            return
        if node.kind == MAPPING and "run" in self.entries(node, f'job "{name}"', "a mapping"):
            return  # a real job that happens to be called like a key
        self.fail(
            key,
            f'"{name}" sits directly under jobs:, so it reads as a job named {name}; '
            + self.misplaced_hint(name, key, jobs, "one level more"),
        )

    def check_name(self, node: _Node, name: str, what: str) -> None:
        if not NAME_PATTERN.fullmatch(name):
            self.fail(node, f'{what} "{name}" is not valid: use only letters, digits, "_", "." and "-"')

    def check_env_name(self, node: _Node, name: str, what: str) -> None:
        if not _ENV_NAME.fullmatch(name):
            self.fail(
                node,
                f'variable name "{name}" in {what} is not valid: it must be non-empty, without "=" or NUL',
            )

    # -- YAML values --------------------------------------------------------------------------

    def entries(self, node: _Node, what: str, expected: str) -> dict[str, tuple[_Node, _Node]]:
        """A mapping's keys (as written) to (key node, value node), with merge keys applied."""
        if node.kind != MAPPING:
            self.fail(node, f"{what} must be {expected}, got {self.describe(node)}")
        found = self.flattened.get(id(node.value))
        if found is None:
            found = self.flatten(node, 0)
            if id(node.value) in self.anchored:
                self.flattened[id(node.value)] = found
        self.charge(node, len(found))
        return found

    def flatten(self, node: _Node, depth: int) -> dict[str, tuple[_Node, _Node]]:
        own: dict[str, tuple[_Node, _Node]] = {}
        sources: list[_Node] = []
        items = node.value
        for index in range(0, len(items), 2):
            key, value = items[index], items[index + 1]
            if key.kind != SCALAR:
                self.fail(key, f"a mapping key must be a name, got {self.describe(key)}")
            name = key.value
            if (name == "<<" and key.plain) or key.tag == MERGE:
                sources.extend(self.merge_sources(value))
            elif name in own:
                first = own[name][0]
                self.fail(
                    key,
                    f'duplicate key "{name}" (first at line {first.line + 1}, '
                    f"column {first.column + 1}); remove one",
                )
            else:
                own[name] = (key, value)
        if not sources:
            return own
        merged: dict[str, tuple[_Node, _Node]] = {}
        for source in sources:  # earlier sources win over later ones, own keys over all
            entries = self.flattened.get(id(source.value))
            if entries is None:
                if depth >= MAX_MERGE_DEPTH:
                    self.fail(source, f"merge keys (<<) nest more than {MAX_MERGE_DEPTH} deep")
                entries = self.flatten(source, depth + 1)
                if id(source.value) in self.anchored:
                    self.flattened[id(source.value)] = entries
            self.charge(source, len(entries))
            for name, pair in entries.items():
                merged.setdefault(name, pair)
        merged.update(own)
        return merged

    def merge_sources(self, node: _Node) -> tuple[_Node, ...]:
        sources: tuple[_Node, ...] = node.value if node.kind == LIST else (node,)
        for source in sources:
            if source.kind != MAPPING:
                self.fail(
                    source,
                    "<< must merge a mapping or a list of mappings (e.g. <<: *base), "
                    f"got {self.describe(source)}",
                )
        return sources

    def items(self, node: _Node, what: str, expected: str) -> tuple[_Node, ...]:
        if node.kind != LIST:
            self.fail(node, f"{what} must be {expected or 'a list'}, got {self.describe(node)}")
        items: tuple[_Node, ...] = node.value
        self.charge(node, len(items))
        return items

    def charge(self, node: _Node, count: int) -> None:
        """Count work so alias bombs and giant expansions stop with a message, not a hang."""
        self.visits += count
        if self.visits > MAX_VISITS:
            self.fail(
                node,
                f"the job file expands to more than {MAX_VISITS:,} values (an alias "
                "counts each time it is used); split it or share less through aliases",
            )

    def tag(self, node: _Node) -> str:
        if node.tag is None:  # resolved on first use: most values never need their type
            node.tag = self.resolve_plain(node.value) if node.plain else STR
        return node.tag

    def resolve_plain(self, text: str) -> str:
        tag = self.plain_tags.get(text)  # files repeat a few values (5m, true) many times
        if tag is None:
            tag = self.resolver.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]  # PyYAML's resolver is untyped
            self.plain_tags[text] = tag
        return tag

    def scalar_value(self, node: _Node) -> Any:
        """The Python value of a scalar (None for a list or mapping: callers report the type)."""
        if node.kind != SCALAR:
            return None
        tag = self.tag(node)
        construct = SafeConstructor.yaml_constructors.get(tag)
        if tag in _STRING_TAGS or construct is None:
            return node.value
        try:
            return construct(self.constructor, yaml.ScalarNode(tag, node.value))
        except (yaml.YAMLError, ValueError, LookupError, TypeError, ArithmeticError) as error:
            self.fail(
                node,
                f"cannot read {_shorten(node.value)} as {_TYPE_NAMES.get(tag, tag)}: "
                f"{_shorten(str(error), 80)[1:-1]}",
            )

    def text(self, node: _Node, what: str, expected: str = "a string") -> str:
        """A string-typed value; `run: yes` must be quoted rather than silently become True."""
        if node.kind != SCALAR or self.tag(node) not in _STRING_TAGS:
            quote = "; put it in quotes" if node.kind == SCALAR and self.tag(node) != NULL else ""
            self.fail(node, f"{what} must be {expected}, got {self.describe(node)}{quote}")
        return self.clean(node, node.value, what)

    def word(self, node: _Node, what: str) -> str:
        """A name or argument: any scalar but null, as written (`[sleep, 1]` means "1")."""
        if node.kind != SCALAR or (node.value in _NULL_WORDS and self.tag(node) == NULL):
            self.fail(node, f"each item of {what} must be a string, got {self.describe(node)}")
        return self.clean(node, node.value, what)

    def env_value(self, node: _Node, what: str) -> str:
        """A variable's value: any scalar but null, as written, except booleans as true/false."""
        if node.kind != SCALAR or self.tag(node) == NULL:
            hint = '; write "" for an empty value' if node.kind == SCALAR else ""
            self.fail(node, f"{what} must be a string, number or boolean, got {self.describe(node)}{hint}")
        if self.tag(node) == BOOL:
            return "true" if self.scalar_value(node) else "false"
        return self.clean(node, node.value, what)

    def clean(self, node: _Node, text: str, what: str) -> str:
        if "\0" in text:
            self.fail(node, f"{what} contains a NUL character, which no command or variable can hold")
        return text

    def integer(self, node: _Node, what: str, minimum: int) -> int:
        value = self.scalar_value(node)
        if type(value) is not int or value < minimum:
            self.fail(node, f"{what} must be a whole number >= {minimum}, got {self.describe(node)}")
        return value

    def duration(self, node: _Node, what: str) -> float:
        value = self.scalar_value(node)
        key = (type(value), value)  # the type keeps True apart from 1
        if key in self.durations:
            return self.durations[key]
        try:
            if isinstance(value, (str, int, float)):
                seconds = self.durations[key] = parse_duration(value)
                return seconds
        except (ValueError, OverflowError):
            pass
        self.fail(
            node,
            f"{what} must be a duration like 250ms, 30s, 5m or 1h30m, "
            f"or a number of seconds, got {self.describe(node)}",
        )

    def describe(self, node: _Node) -> str:
        if node.kind != SCALAR:
            return f"a {node.kind}"
        tag = self.tag(node)
        if tag == NULL:
            return "null (nothing)"
        if tag in _STRING_TAGS or tag not in _TYPE_NAMES:
            return f"the string {_shorten(node.value)}"
        return f"{_TYPE_NAMES[tag]} ({_shorten(node.value)[1:-1]})"

    def fail(self, node: _Node, message: str) -> NoReturn:
        raise JobFileError(self.path, node.line + 1, node.column + 1, message)


# How each job key is read, in a job and in defaults: functions, not the reader's bound
# methods, which would make the reader a cycle that outlives the load (and that gc.freeze,
# after a load for a whole run, would keep with its drafts for good).
_FIELD_READERS: dict[str, Callable[[_Reader, _Node, str], Any]] = {
    "run": _Reader.read_run,
    "resources": _Reader.read_resources,
    "host_resources": _Reader.read_host_resources,
    "timeout": _Reader.read_timeout,
    "retries": _Reader.read_retries,
    "retry_delay": _Reader.read_retry_delay,
    "cwd": _Reader.read_cwd,
    "allow_failure": _Reader.read_allow_failure,
    "tags": _Reader.read_tags,
    "description": _Reader.read_description,
    "shell": _Reader.read_shell,
    "dotenv": _Reader.read_dotenv,
    "inputs": _Reader.read_inputs,
    "outputs": _Reader.read_outputs,
}


def _has_cycle(jobs: Mapping[str, Job]) -> bool:
    """Whether following needs ever comes back to a job on the way (a depth-first walk)."""
    done: set[str] = set()
    for start in jobs:
        if start in done:
            continue
        on_path = {start}
        stack = [(start, iter(jobs[start].needs))]
        while stack:
            name, needs = stack[-1]
            for need in needs:
                if need in on_path:
                    return True
                if need not in done:
                    on_path.add(need)
                    stack.append((need, iter(jobs[need].needs)))
                    break
            else:
                stack.pop()
                on_path.discard(name)
                done.add(name)
    return False


def _as_written(node: _Node, path: str) -> str:
    """A path quoted as the file writes it, and what it became when variables changed it."""
    return f'"{node.value}"' if node.value == path else f'"{node.value}" ({path})'


def _shorten(text: str, limit: int = 40) -> str:
    """Quoted, escaped and cut short, so a message stays one readable line."""
    return json.dumps(text if len(text) <= limit else text[: limit - 3] + "...", ensure_ascii=False)


def _suggest(word: str, candidates: Iterable[str], otherwise: str) -> str:
    """'did you mean "x"?' for a close match, else the fallback hint."""
    import difflib  # only for a mistake: spares every valid file the import

    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f'did you mean "{close[0]}"?' if close else otherwise
