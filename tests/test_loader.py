"""The job file loader: every key, every error at its line and column, and its limits.

The larger valid files live in tests/loader/NAME/jobs.yaml, each with the whole load result
beside it in loaded.yaml (every job field that differs from the model's default, and argv),
a golden file refreshed by `make golden`; small cases stay inline, next to their assertion.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import textwrap
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import loader
from orchestrator.errors import JobFileError, UsageError
from orchestrator.loader import load, load_text
from orchestrator.model import Job, JobFile, Position, parse_duration

PATH = "/project/ci/jobs.yaml"
FOLDERS = Path(__file__).parent / "loader"


def read(text: str) -> JobFile:
    return load_text(textwrap.dedent(text), PATH)


def error(text: str | bytes) -> JobFileError:
    source = textwrap.dedent(text) if isinstance(text, str) else text
    with pytest.raises(JobFileError) as caught:
        load_text(source, PATH)
    return caught.value


def where(err: JobFileError) -> tuple[int, int]:
    return err.line, err.column


def read_folder(name: str) -> JobFile:
    return load_text((FOLDERS / name / "jobs.yaml").read_bytes(), PATH)


def describe(jobfile: JobFile) -> str:
    """The load result as YAML: the file's fields, then each job's fields that differ from
    the model's defaults (a field back at its default drops out of the diff) and its argv."""
    defaults = Job(name="", run="")
    jobs = {}
    for name, job in jobfile.jobs.items():
        fields = [field.name for field in dataclasses.fields(Job) if field.name != "name"]
        jobs[name] = {
            key: plain(getattr(job, key)) for key in fields if getattr(job, key) != getattr(defaults, key)
        }
        jobs[name]["argv"] = plain(job.argv)
    whole = {key: plain(getattr(jobfile, key)) for key in ("path", "version", "env", "resources")}
    return yaml.safe_dump(
        {**whole, "jobs": jobs}, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )


def plain(value: Any) -> Any:
    """Model values as YAML data; a list or dict in the model is a bug: it must not change."""
    if isinstance(value, (list, dict)):
        raise TypeError(f"mutable {type(value).__name__} in the model: {value!r}")
    if isinstance(value, Position):
        return {"line": value.line, "column": value.column}
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value


# -- the format, key by key -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(path.name for path in FOLDERS.iterdir()))
def test_folder_loads_as_its_golden_file(name, golden, monkeypatch):
    monkeypatch.setenv("FROM_CALLER", "x")  # the caller's environment is added at run time only
    golden.check(FOLDERS / name / "loaded.yaml", describe(read_folder(name)))


def test_unset_keys_take_the_model_defaults():
    job = read("jobs: {a: {run: make}}").jobs["a"]
    assert (job.needs, dict(job.resources), job.timeout, job.retries) == ((), {}, None, 0)
    assert (job.cwd, job.allow_failure, job.tags) == (None, False, ())
    assert (job.description, job.shell) == ("", None)
    assert dict(job.env) == {} and dict(job.matrix) == {}


def test_position_is_the_job_key():
    jobs = read("""\
        jobs:
          a: {run: make}

          b:
            run: make
    """)
    assert jobs.jobs["a"].position == Position(2, 3)
    assert jobs.jobs["b"].position == Position(4, 3)


def test_jobfile_keeps_the_path_it_was_given():
    assert read("jobs: {a: {run: make}}").path == PATH


def test_argv_items_are_kept_as_written():
    job = read("jobs: {a: {run: [sleep, 1, 0.50, yes, 0x10]}}").jobs["a"]
    assert job.run == ("sleep", "1", "0.50", "yes", "0x10")


@pytest.mark.parametrize(
    "shell, argv",
    [
        ("bash", ("bash", "-c", "make")),
        ('"bash -euo pipefail"', ("bash", "-euo", "pipefail", "-c", "make")),
        ("[zsh, -c]", ("zsh", "-c", "make")),
    ],
)
def test_shell(shell, argv):
    assert read(f"jobs: {{a: {{run: make, shell: {shell}}}}}").jobs["a"].argv == argv


def test_cwd_is_absolute_beside_the_job_file():
    jobs = read("""\
        jobs:
          a: {run: make, cwd: services/api}
          b: {run: make, cwd: ../up}
          c: {run: make, cwd: /abs/dir}
    """).jobs
    assert jobs["a"].cwd == "/project/ci/services/api"
    assert jobs["b"].cwd == "/project/up"
    assert jobs["c"].cwd == "/abs/dir"


def test_tags_and_description():
    job = read("jobs: {a: {run: make, tags: [slow, db, slow], description: !!str 2024}}").jobs["a"]
    assert job.tags == ("slow", "db") and job.description == "2024"


@pytest.mark.parametrize("text, expected", [("yes", True), ("false", False), ("True", True)])
def test_allow_failure_booleans(text, expected):
    job = read(f"jobs: {{a: {{run: make, allow_failure: {text}}}}}").jobs["a"]
    assert job.allow_failure is expected


def test_resources_as_list_and_mapping():
    jobs = read("""\
        resources: {db: 2, gpu: 4}
        jobs:
          a: {run: make, resources: [db, gpu]}
          b: {run: make, resources: {gpu: 4}}
    """).jobs
    assert dict(jobs["a"].resources) == {"db": 1, "gpu": 1}
    assert dict(jobs["b"].resources) == {"gpu": 4}


def test_numeric_job_names_are_names():
    jobs = read("jobs: {1: {run: make}, 2: {run: make, needs: [1]}}").jobs
    assert list(jobs) == ["1", "2"] and jobs["2"].needs == ("1",)


def test_names_may_hold_dots_dashes_underscores():
    assert list(read("jobs: {a.b-c_d: {run: make}}").jobs) == ["a.b-c_d"]


def test_version_may_be_left_out():
    assert read("jobs: {a: {run: make}}").version == 1


# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h", 3600.0),
        ("90", 90.0),
        ("1.5", 1.5),
        ("'45'", 45.0),
        ("2m30s", 150.0),
    ],
)
def test_timeout_durations(text, seconds):
    assert read(f"jobs: {{a: {{run: make, timeout: {text}}}}}").jobs["a"].timeout == seconds


def test_retry_delay_may_be_zero_and_timeout_null_drops_a_default():
    job = read("""\
        defaults: {timeout: 5m, retry_delay: 2s}
        jobs:
          a: {run: make, timeout: null, retry_delay: 0}
    """).jobs["a"]
    assert job.timeout is None and job.retry_delay == 0.0


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        (" 7s ", 7),
        ("0", 0),
        (12, 12),
        (0.5, 0.5),
        ("1.5m", 90),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 m", "5x", "1h30", "m", "-5s", -1, True, "inf", "nan", float("inf")])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# -- environment ------------------------------------------------------------------------


def test_env_null_is_an_error():
    err = error("""\
        jobs:
          a:
            run: make
            env: {A: ~}
    """)
    assert where(err) == (4, 14)
    assert 'A in env of job "a"' in err.message and 'write ""' in err.message


# -- defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["run", "needs", "matrix"])
def test_defaults_cannot_hold_job_only_keys(key):
    err = error(f"defaults:\n  {key}: [x]\njobs: {{a: {{run: make}}}}\n")
    assert where(err) == (2, 3) and f'defaults cannot set "{key}"' in err.message


# -- matrix and needs -------------------------------------------------------------------


def test_matrix_values_are_kept_as_written():
    jobs = read("jobs: {t: {run: tox, matrix: {PY: [3.10, 3.11], DEBUG: [yes]}}}").jobs
    assert list(jobs) == ["t[PY=3.10,DEBUG=true]", "t[PY=3.11,DEBUG=true]"]


def test_matrix_value_cannot_hold_code_in_the_command():
    jobs = read("""jobs: {a: {run: 'echo "$X"', matrix: {X: ["$(rm -rf /)", "; reboot"]}}}""").jobs
    assert {job.run for job in jobs.values()} == {'echo "$X"'}


def test_needs_on_a_matrix_job_means_every_expansion():
    jobs = read("""\
        jobs:
          build: {run: make, matrix: {ARCH: [x86_64, arm64]}}
          pack: {run: tar, needs: [build]}
    """).jobs
    assert jobs["pack"].needs == ("build[ARCH=x86_64]", "build[ARCH=arm64]")


def test_needs_may_name_one_expansion_or_select_some():
    jobs = read("""\
        jobs:
          build: {run: make, matrix: {ARCH: [x86_64, arm64], OS: [linux, darwin]}}
          one: {run: tar, needs: ["build[ARCH=arm64,OS=linux]"]}
          some: {run: tar, needs: ["build[ARCH=arm64]"]}
    """).jobs
    assert jobs["one"].needs == ("build[ARCH=arm64,OS=linux]",)
    assert jobs["some"].needs == ("build[ARCH=arm64,OS=linux]", "build[ARCH=arm64,OS=darwin]")


def test_matrix_jobs_can_need_other_jobs():
    jobs = read("""\
        jobs:
          lint: {run: ruff}
          build: {run: make, needs: [lint], matrix: {ARCH: [a, b]}}
    """).jobs
    assert jobs["build[ARCH=a]"].needs == ("lint",) and jobs["build[ARCH=b]"].needs == ("lint",)


def test_needs_listed_twice_count_once():
    jobs = read("jobs: {a: {run: make}, b: {run: make, needs: [a, a]}}").jobs
    assert jobs["b"].needs == ("a",)


def test_needs_may_come_later_in_the_file():
    assert read("jobs: {b: {run: make, needs: [a]}, a: {run: make}}").jobs["b"].needs == ("a",)


def test_unknown_need_suggests_a_close_name():
    err = error("""\
        jobs:
          build: {run: make}
          test:
            run: make test
            needs: [lint, biuld]
          lint: {run: ruff}
    """)
    assert where(err) == (5, 19)
    assert err.message == 'unknown need "biuld"; did you mean "build"?'


@pytest.mark.parametrize("need", ["build[ARCH=sparc]", "build[ARCH]", "build[OS=linux]"])
def test_unknown_expansion_is_an_error(need):
    err = error(f"""\
        jobs:
          build: {{run: make, matrix: {{ARCH: [arm64]}}}}
          t: {{run: x, needs: ["{need}"]}}
    """)
    assert f'unknown need "{need}"' in err.message


def test_cycle_is_printed_from_its_first_job_at_its_need():
    err = error("""\
        jobs:
          a:
            run: make
            needs: [b]
          b:
            run: make
            needs: [c]
          c:
            run: make
            needs: [a]
    """)
    assert err.message.startswith("dependency cycle: a -> b -> c -> a")
    assert where(err) == (4, 13)


def test_self_need_is_a_cycle():
    err = error("jobs:\n  a:\n    run: make\n    needs: [x, a]\n  x: {run: make}\n")
    assert err.message.startswith("dependency cycle: a -> a") and where(err) == (4, 16)


def test_cycle_through_a_matrix_job():
    err = error("""\
        jobs:
          build: {run: make, matrix: {ARCH: [a, b]}, needs: [pack]}
          pack: {run: tar, needs: [build]}
    """)
    assert err.message.startswith("dependency cycle: build[ARCH=a] -> pack -> build[ARCH=a]")
    assert where(err) == (2, 54)


def test_matrix_errors():
    assert where(error("jobs: {b: {run: make, matrix: {A: []}}}")) == (1, 35)
    err = error("jobs: {b: {run: make, matrix: {A: [x, y, x]}}}")
    assert where(err) == (1, 42) and '"x" appears twice' in err.message
    err = error("jobs: {b: {run: make, matrix: {A: [[x]]}}}")
    assert where(err) == (1, 36) and "must be a string, number or boolean" in err.message


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
def test_giant_matrix_is_refused_without_expanding():
    axes = ", ".join(f"K{i}: [a, b, c, d, e, f, g, h, i, j]" for i in range(10))
    started = time.perf_counter()
    err = error(f"jobs: {{b: {{run: make, matrix: {{{axes}}}}}}}")
    assert "expands to 10,000,000,000 jobs" in err.message
    assert time.perf_counter() - started < 1


# -- resources --------------------------------------------------------------------------


def test_undeclared_resource():
    err = error("""\
        resources: {cpu: 2}
        jobs:
          a: {run: make, resources: [gpu]}
    """)
    assert where(err) == (3, 30)
    assert err.message == 'resource "gpu" is not declared under resources: did you mean "cpu"?'


def test_over_capacity():
    err = error("""\
        resources: {db: 1}
        jobs:
          x:
            run: make
            resources: {db: 3}
    """)
    assert where(err) == (5, 21)
    assert err.message.startswith('job "x" asks for 3 units of "db" but it has 1')


@pytest.mark.parametrize("units", ["0", "-1", "1.5", "true", "two", "[1]"])
def test_units_must_be_positive_whole_numbers(units):
    err = error(f"resources: {{db: 2}}\njobs: {{x: {{run: make, resources: {{db: {units}}}}}}}\n")
    assert where(err) == (2, 39) and "must be a whole number >= 1" in err.message


# -- anchors, aliases and merge keys ----------------------------------------------------


def test_aliases_share_values():
    jobs = read("""\
        jobs:
          a: {run: make, tags: &tags [x, y], env: &env {K: v}}
          b: {run: make, tags: *tags, env: *env}
    """).jobs
    assert jobs["b"].tags == ("x", "y") and jobs["b"].env["K"] == "v"


def test_duplicate_keys_are_errors_at_the_second():
    err = error("""\
        jobs:
          build: {run: make}
          build: {run: make all}
    """)
    assert where(err) == (3, 3) and err.message.startswith('duplicate key "build"')
    err = error("jobs: {a: {run: make, env: {A: '1', A: '2'}}}")
    assert where(err) == (1, 37) and 'duplicate key "A"' in err.message


def test_merged_keys_are_not_duplicates():
    job = read("jobs: {a: &a {run: make}, b: {<<: *a, run: make b}}").jobs["b"]
    assert job.run == "make b"


def test_merge_of_a_non_mapping():
    err = error("jobs: {a: {description: &d text, run: make}, b: {<<: *d, run: make}}")
    assert where(err) == (1, 54) and "<< must merge a mapping" in err.message


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
def test_merge_bomb_is_read_once_per_anchor():
    # Each level merges the one below ten times: 10**9 merged keys if expanded naively.
    value = "&n0 {A: '1'}"
    for level in range(1, 10):
        value = f"&n{level} {{<<: [{value}" + f", *n{level - 1}" * 9 + "]}"
    started = time.perf_counter()
    job = read("jobs:\n  a:\n    run: make\n    env: " + value + "\n").jobs["a"]
    assert dict(job.env) == {"A": "1"}
    assert time.perf_counter() - started < 2


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
def test_billion_laughs_is_refused_quickly():
    lines = ["jobs:", "  a:", "    run: make", "    tags: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, 10):
        items = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"  b{level}: {{run: make, tags: &l{level} [{items}]}}")
    started = time.perf_counter()
    err = error("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 5
    assert where(err) == (5, 30) and "must be a string, got a list" in err.message


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
@pytest.mark.no_cover  # a time bound: line tracing would measure the tracer
def test_repeated_big_alias_hits_the_work_limit():
    names = ", ".join(f"t{i}" for i in range(1000))
    lines = ["jobs:", f"  a: {{run: make, tags: &t [{names}]}}"]
    lines += [f"  j{i}: {{run: make, tags: *t}}" for i in range(loader.MAX_VISITS // 1000 + 10)]
    started = time.perf_counter()
    err = error("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 10
    assert "expands to more than" in err.message and err.line > 3


def test_node_limit(monkeypatch):
    monkeypatch.setattr(loader, "MAX_NODES", 50)
    err = error("jobs: {" + ", ".join(f"j{i}: {{run: make}}" for i in range(30)) + "}")
    assert "more than 50 YAML values" in err.message and err.line == 1


def test_recursive_alias_is_an_error():
    err = error("jobs:\n  a: &a\n    run: make\n    needs: [*a]\n")
    assert where(err) == (4, 13) and "refers to a value that contains it" in err.message


# -- tags and safety --------------------------------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        '!!python/object/apply:os.system ["echo pwned"]',
        "!!python/name:os.system",
        "!shell make",
        "!!set {a, b}",
        "!!binary aGk=",
        "!!omap [{a: 1}]",
    ],
)
def test_object_and_unknown_tags_are_refused(tagged):
    err = error(f"jobs:\n  a:\n    run: {tagged}\n")
    assert where(err) == (3, 10) and "is not allowed here" in err.message


def test_standard_tags_are_fine():
    job = read("jobs: !!map {a: {run: !!str 42, retries: !!int '3', tags: !!seq [x]}}").jobs["a"]
    assert (job.run, job.retries, job.tags) == ("42", 3, ("x",))


def test_bad_explicit_scalar_is_an_error():
    err = error("jobs: {a: {run: make, retries: !!int ''}}")
    assert where(err) == (1, 32) and "cannot read" in err.message


# -- names and keys ---------------------------------------------------------------------


@pytest.mark.parametrize("name, column", [('"../x"', 3), ('"a/b"', 3), ('""', 3), ("'a b'", 3)])
def test_bad_job_names(name, column):
    err = error(f"jobs:\n  {name}: {{run: make}}\n")
    assert where(err) == (2, column) and "is not valid" in err.message


def test_unknown_keys_at_each_level():
    err = error("jobs:\n  x:\n    run: make\n    neds: [y]\n  y: {run: make}\n")
    assert where(err) == (4, 5)
    assert err.message == 'unknown key "neds" in job "x"; did you mean "needs"?'
    err = error("jobz: {a: {run: make}}\n")
    assert where(err) == (1, 1) and 'did you mean "jobs"?' in err.message
    err = error("defaults: {retrys: 1}\njobs: {a: {run: make}}\n")
    assert where(err) == (1, 12) and 'did you mean "retries"?' in err.message
    err = error("jobs: {a: {run: make}}\nplugins: []\n")
    assert where(err) == (2, 1) and "expected one of: version, env" in err.message


@pytest.mark.parametrize(
    "text, position, fragment",
    [
        ("version: 2\njobs: {a: {run: make}}\n", (1, 10), "version must be 1"),
        ("version: '1'\njobs: {a: {run: make}}\n", (1, 10), "version must be 1"),
        ("version: 1\n", (1, 1), "has no jobs"),
        ("jobs: {}\n", (1, 7), "jobs is empty"),
        ("jobs: [a]\n", (1, 7), "jobs must be a mapping"),
        ("- jobs: {}\n", (1, 1), "must be a mapping with a jobs: key, got a list"),
        ("", (1, 1), "the job file is empty"),
        ("# just a comment\n", (1, 1), "the job file is empty"),
        ("jobs: {a: {run: make}}\n---\njobs: {}\n", (2, 1), "more than one YAML document"),
        ("jobs: {a: {needs: []}}\n", (1, 8), 'job "a" has no run'),
        ("jobs: {a: make}\n", (1, 11), "must be a mapping with a run: key"),
        ("jobs: {a: {run: ''}}\n", (1, 17), "is empty"),
        ("jobs: {a: {run: []}}\n", (1, 17), "is an empty list"),
        ("jobs: {a: {run: yes}}\n", (1, 17), "put it in quotes"),
        ("jobs: {a: {run: make, needs: b}}\n", (1, 30), "must be a list of job names"),
        ("jobs: {a: {run: make, retries: -1}}\n", (1, 32), "whole number >= 0"),
        ("jobs: {a: {run: make, timeout: 0}}\n", (1, 32), "must be more than 0"),
        ("jobs: {a: {run: make, timeout: 5 min}}\n", (1, 32), "must be a duration"),
        ("jobs: {a: {run: make, retry_delay: -1s}}\n", (1, 36), "must be a duration"),
        ("jobs: {a: {run: make, allow_failure: 1}}\n", (1, 38), "true or false"),
        ("jobs: {a: {run: make, tags: ['a b']}}\n", (1, 30), 'tag "a b" is not valid'),
        ("jobs: {a: {run: make, cwd: [x]}}\n", (1, 28), "cwd of job"),
        ("jobs: {a: {run: make, shell: ''}}\n", (1, 30), "shell of job"),
        ("jobs: {a: {run: make, env: {'': x}}}\n", (1, 29), "variable name"),
        ('jobs: {a: {run: "a\\0b"}}\n', (1, 17), "NUL character"),
        ("? [a]\n: b\njobs: {a: {run: make}}\n", (1, 3), "mapping key must be a name"),
        ("jobs: {a: {run: make}, b: {run: make, env: *nope}}\n", (1, 44), "unknown alias *nope"),
    ],
)
def test_file_errors(text, position, fragment):
    err = error(text)
    assert where(err) == position and fragment in err.message


# -- bytes, encodings and syntax --------------------------------------------------------


def test_syntax_error_uses_the_parser_mark():
    err = error("jobs:\n  a: {run: make\n  b: {run: make}\n")
    assert where(err) == (3, 4) and err.message.startswith("invalid YAML:")


def test_tab_indentation_hint():
    err = error("jobs:\n\ta: {run: make}\n")
    assert where(err) == (2, 1) and "not tabs" in err.message


def test_non_utf8_points_at_the_first_bad_byte():
    err = error(b"jobs:\n  a:\n    run: echo caf\xe9\n")
    assert where(err) == (3, 18) and "not UTF-8" in err.message


def test_non_utf8_column_counts_characters():
    err = error("jobs:\n  a: {run: 'éé".encode() + b"\xff'}\n")
    assert where(err) == (2, 15)


def test_binary_garbage():
    err = error(bytes(range(256)) * 8)
    assert "not UTF-8" in err.message or "invalid character" in err.message


def test_control_characters():
    err = error(b'jobs:\n  a: {run: "x\x01"}\n')
    assert where(err) == (2, 14) and "control characters" in err.message
    assert where(error('jobs:\n  a: {run: "é\x01"}\n')) == (2, 14)  # columns count characters


def test_lone_surrogate_in_text():
    err = error("jobs:\n  a: {run: x\ud800}\n")
    assert where(err) == (2, 13) and "not UTF-8" in err.message


def test_utf8_bom_is_fine():
    assert list(load_text(b"\xef\xbb\xbfjobs: {a: {run: make}}\n", PATH).jobs) == ["a"]


def test_too_big(monkeypatch):
    monkeypatch.setattr(loader, "MAX_BYTES", 100)
    err = error("jobs: {a: {run: make}}\n" + "#" * 200)
    assert where(err) == (1, 1) and "larger than" in err.message


def test_pure_python_parser_gives_the_same_answers(monkeypatch, golden):
    monkeypatch.setattr(loader, "_PARSER", yaml.SafeLoader)
    monkeypatch.setattr(loader, "_PARSER_TAKES_BYTES", False)
    golden.check(FOLDERS / "spec-example" / "loaded.yaml", describe(read_folder("spec-example")))
    assert where(error("jobs:\n  a: {run: make\n  b: {run: make}\n")) == (3, 4)
    assert where(error('jobs:\n  a: {run: "é\x01"}\n')) == (2, 14)
    assert where(error(b"jobs:\n  a: {run: \xff}\n")) == (2, 12)


# -- files ------------------------------------------------------------------------------


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  a: {run: make, cwd: sub}\n")
    jobs = load(str(path))
    assert jobs.path == str(path) and jobs.jobs["a"].cwd == str(tmp_path / "sub")


def test_load_errors_name_the_path(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  a: {run: make, neds: []}\n")
    with pytest.raises(JobFileError) as caught:
        load(str(path))
    assert str(caught.value).startswith(f"{path}:2:18: unknown key")


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p, "no such file"),
        (lambda p: p.mkdir() or p, "is a directory"),
    ],
)
def test_load_unreadable_paths(tmp_path, make, fragment):
    path = make(tmp_path / "jobs.yaml")
    with pytest.raises(UsageError) as caught:  # nothing was read: no line and column to give
        load(str(path))
    assert fragment in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_load_permission_denied(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs: {a: {run: make}}\n")
    path.chmod(0)
    with pytest.raises(UsageError) as caught:
        load(str(path))
    assert "permission denied" in str(caught.value)


def test_path_with_nul_byte():
    with pytest.raises(UsageError) as caught:
        load("jobs\0.yaml")
    assert "cannot open" in str(caught.value)


# -- the garbage collector and speed ----------------------------------------------------


def test_gc_is_restored_after_success_and_failure():
    assert gc.isenabled()
    read("jobs: {a: {run: make}}")
    assert gc.isenabled()
    error("jobs: {a: {run: make, x: 1}}")
    assert gc.isenabled()
    gc.disable()
    try:
        read("jobs: {a: {run: make}}")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_reader_and_its_drafts_go_when_the_load_ends():
    # Not left to the cyclic GC: after a load for a run, gc.freeze would keep them for good.
    gc.collect()
    gc.disable()
    try:
        read("jobs: {a: {run: make}, b: {run: make, needs: [a], outputs: [x]}}")
        left = [type(o).__name__ for o in gc.get_objects() if isinstance(o, (loader._Reader, loader._Draft))]
    finally:
        gc.enable()
    assert left == []


def big_job_file(count: int) -> str:
    lines = ["version: 1", "jobs:", '  j0: {run: "true"}']
    lines += [f'  j{i}: {{run: "true", needs: [j{i - 1}]}}' for i in range(1, count)]
    return "\n".join(lines) + "\n"


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
@pytest.mark.no_cover  # a time bound: line tracing would measure the tracer
def test_100k_jobs_load_quickly():
    text = big_job_file(100_000)
    started = time.perf_counter()
    jobs = load_text(text, PATH).jobs
    elapsed = time.perf_counter() - started
    assert len(jobs) == 100_000 and jobs["j99999"].needs == ("j99998",)
    assert elapsed < 20, f"100k jobs took {elapsed:.1f}s"


def bench_shaped_job_file(chunks: int) -> str:
    """The bench's row (d) file: per 40 jobs, 36 in a chain (every 5th also needing the job
    10 back, every 3rd tagged) and a 2x2 matrix job that the next chunk's first job needs."""
    lines = ["version: 1", "env: {PYTHONUNBUFFERED: '1'}", "defaults: {timeout: 10m, retries: 1}", "jobs:"]
    n = 0
    for chunk in range(chunks):
        for k in range(36):
            needs = [f"m{chunk - 1}"] if k == 0 and chunk else [f"j{n - 1}"] if n else []
            needs += [f"j{n - 10}"] if k % 5 == 1 and n >= 10 else []
            tags = f", tags: [t{k % 3}]" if k % 3 == 0 else ""
            lines.append(f'  j{n}: {{run: "true", needs: [{", ".join(needs)}]{tags}}}')
            n += 1
        lines.append(
            f'  m{chunk}: {{run: "echo $OS", needs: [j{n - 1}], matrix: {{OS: [a, b], ARCH: [x, y]}}}}'
        )
    return "\n".join(lines) + "\n"


@pytest.mark.no_cover  # coverage's own bookkeeping would be counted
def test_memory_per_job_stays_small():
    # Nodes keep no parser Marks, each job's nodes go once it is read, and graphlib is not
    # asked unless there is a cycle: about 1.1 KB per job at the peak, where it was 3.8 KB
    # (400 MB for the bench's 100,000 jobs).
    text = bench_shaped_job_file(250)
    gc.collect()
    tracemalloc.start()
    try:
        jobs = load_text(text, PATH).jobs
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(jobs) == 10_000 and jobs["j36"].needs == tuple(
        f"m0[OS={o},ARCH={a}]" for o in "ab" for a in "xy"
    )
    assert peak / len(jobs) < 2000, f"{peak / len(jobs):.0f} bytes per job at the peak"


def test_long_cycle_in_a_big_file_is_found():
    text = big_job_file(20_000).replace('j0: {run: "true"}', 'j0: {run: "true", needs: [j19999]}')
    err = error(text)
    assert err.message.startswith("dependency cycle: j0 -> j19999 -> j19998")
    assert where(err) == (3, 29)
    assert "-> ... (19,990 more) -> j2 -> j1 -> j0;" in err.message


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
@pytest.mark.slow
@pytest.mark.no_cover  # a time bound: line tracing would measure the tracer
def test_50mb_file_is_refused_within_seconds(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("jobs: [" + "a," * (25 * 1024 * 1024) + "a]\n")
    started = time.perf_counter()
    with pytest.raises(JobFileError) as caught:
        load(str(path))
    assert time.perf_counter() - started < 20
    assert "more than 2,000,000 YAML values" in caught.value.message


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
def test_classic_billion_laughs_is_refused_quickly():
    lines = ['lol: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 10)]
    started = time.perf_counter()
    err = error("\n".join(lines) + "\njobs: {a: {run: make}}\n")
    assert time.perf_counter() - started < 5
    assert where(err) == (1, 1) and 'unknown key "lol" at the top level' in err.message
