"""Whatever bytes or YAML arrive, the loader answers with a JobFile or a JobFileError."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import JobFileError
from orchestrator.graph import order
from orchestrator.loader import load_text
from orchestrator.matrix import base_name
from orchestrator.model import NAME_PATTERN, JobFile

PATH = "/project/jobs.yaml"

VALID = """\
version: 1
env: {CI: "1", DEBUG: yes}
resources: {db: 1, heavy: 2}
defaults: &defaults
  timeout: 10m
  retries: 1
  env: {LEVEL: "2"}
jobs:
  lint: {run: ruff check ., tags: [fast]}
  unit:
    <<: *defaults
    run: [pytest, -q, tests]
    needs: [lint]
    resources: [heavy]
  migrate:
    run: ./manage.py migrate
    resources: {db: 1}
    retry_delay: 250ms
  build:
    run: make ARCH="$ARCH"
    shell: bash -eu
    matrix: {ARCH: [x86_64, arm64], OS: [linux]}
  pack:
    run: tar czf out.tgz build
    needs: [build, "build[ARCH=arm64]", migrate]
    cwd: out
    allow_failure: true
    description: packs the build
"""

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**400),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["make", "5m", "250ms", "x86_64", "lint", "db", "true", "<<", "~", ""]),
)
keys = st.one_of(
    st.sampled_from(
        [
            "version",
            "env",
            "resources",
            "defaults",
            "jobs",
            "run",
            "needs",
            "timeout",
            "retries",
            "retry_delay",
            "cwd",
            "allow_failure",
            "tags",
            "description",
            "shell",
            "matrix",
            "lint",
            "build",
            "db",
            "ARCH",
            "<<",
        ]
    ),
    st.text(max_size=10),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)),
    max_leaves=40,
)
# A job key's value: the shapes of `documents`, smaller. The loader decides on a value at its
# type and walks it no deeper than a list of strings (run, needs, tags) or a mapping of
# scalars (env, matrix, resources), so leaves past a few take the same paths again; 40 of
# them under each of a job's keys made this the slowest test of the suite.
job_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)),
    max_leaves=8,
)
job = st.dictionaries(
    st.sampled_from(
        [
            "run",
            "needs",
            "resources",
            "timeout",
            "retries",
            "retry_delay",
            "env",
            "cwd",
            "allow_failure",
            "tags",
            "description",
            "shell",
            "matrix",
        ]
    ),
    job_values,
    max_size=6,
)
job_files = st.fixed_dictionaries(
    {"jobs": st.dictionaries(st.sampled_from(["lint", "build", "test", "a/b", ""]), job, max_size=4)},
    optional={"version": scalars, "env": documents, "resources": documents, "defaults": job},
)


def loads_or_refuses(data: bytes | str) -> None:
    try:
        result = load_text(data, PATH)
    except JobFileError as error:
        assert error.line >= 1 and error.column >= 1 and error.message
        assert str(error).startswith(PATH + ":")
    else:
        assert_well_formed(result)


def assert_well_formed(jobfile: JobFile) -> None:
    """What an accepted file promises the engine: every mistake was refused before running."""
    assert jobfile.path == PATH and jobfile.version == 1 and jobfile.jobs
    assert all(type(units) is int and units >= 1 for units in jobfile.resources.values())
    for env in [jobfile.env, *(job.env for job in jobfile.jobs.values())]:
        assert all(name and "=" not in name and "\0" not in name for name in env)
        assert all(isinstance(value, str) for value in env.values())
    for name, job in jobfile.jobs.items():
        assert job.name == name and NAME_PATTERN.fullmatch(base_name(name)), name
        if isinstance(job.run, str):
            assert job.run.strip()
        else:
            assert job.run and all(isinstance(word, str) for word in job.run)
        assert all(need in jobfile.jobs and need != name for need in job.needs), job.needs
        assert all(1 <= units <= jobfile.resources[r] for r, units in job.resources.items())
        assert job.timeout is None or job.timeout > 0
        assert type(job.retries) is int and job.retries >= 0 and job.retry_delay >= 0
        assert type(job.allow_failure) is bool
        assert all(isinstance(tag, str) and tag for tag in job.tags)
    assert sorted(order(jobfile.jobs, jobfile.jobs)) == sorted(jobfile.jobs)  # no cycle left


def test_the_valid_file_is_valid():
    assert len(load_text(VALID, PATH).jobs) == 6


@SETTINGS
@given(documents)
def test_any_yaml_document(document):
    loads_or_refuses(yaml.safe_dump(document, allow_unicode=True))


@SETTINGS
@given(job_files)
def test_any_job_file_shaped_document(document):
    loads_or_refuses(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


def mutate(data, edits):
    """`data` (bytes or str) after each edit: delete or insert `chunk` at `where`, or swap
    the two neighbours there."""
    for kind, where, chunk in edits:
        where %= len(data) + 1
        if kind == "delete":
            data = data[:where] + data[where + len(chunk) :]
        elif kind == "insert":
            data = data[:where] + chunk + data[where:]
        elif where + 1 < len(data):  # swap two neighbours
            data = data[:where] + data[where + 1 : where + 2] + data[where : where + 1] + data[where + 2 :]
    return data


SHARP_BYTES = [
    b":",
    b"-",
    b"[",
    b"{",
    b"}",
    b"&a",
    b"*a",
    b"<<: ",
    b"\t",
    b"\n",
    b"!!",
    b"'",
    b'"',
    b"\xff",
    b"\xc3",
    b"\x00",
    b"  ",
]
edits = st.lists(
    st.tuples(
        st.sampled_from(["delete", "insert", "swap"]),
        st.integers(min_value=0),
        st.one_of(st.binary(min_size=1, max_size=4), st.sampled_from(SHARP_BYTES)),
    ),
    min_size=1,
    max_size=6,
)


@SETTINGS
@given(edits)
def test_byte_mutations_of_a_valid_file(changes):
    loads_or_refuses(mutate(VALID.encode(), changes))


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "swap"]),
            st.integers(min_value=0),
            st.text(min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_text_mutations_of_a_valid_file(changes):
    loads_or_refuses(mutate(VALID, changes))


graphs = st.integers(min_value=1, max_value=8).flatmap(
    lambda size: st.lists(st.lists(st.integers(0, size - 1), max_size=3), min_size=size, max_size=size)
)


@SETTINGS
@given(graphs)
def test_a_file_is_refused_for_a_cycle_exactly_when_its_needs_have_one(needs):
    """The loader's own walk for cycles, before graphlib names one, misses none and invents none."""
    text = "jobs:\n" + "".join(
        f"  j{index}: {{run: x, needs: [{', '.join(f'j{need}' for need in sorted(set(items)))}]}}\n"
        for index, items in enumerate(needs)
    )
    try:
        TopologicalSorter({f"j{i}": [f"j{n}" for n in items] for i, items in enumerate(needs)}).prepare()
        cycle = False
    except CycleError:
        cycle = True
    try:
        load_text(text, PATH)
        refused = ""
    except JobFileError as error:
        refused = error.message
    assert refused.startswith("dependency cycle: ") if cycle else refused == ""
