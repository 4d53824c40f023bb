"""NAME=VALUE arguments, dotenv files and the layering of a job's environment, seen through the CLI."""

import pytest
from conftest import child, run_cli

LAYERS = f"""
dotenv: [.env, .env.local]
env: {{FROM_ENV: file-env, SHARED: file-env}}
defaults:
  env: {{SHARED: defaults-env, FROM_DEFAULTS: defaults}}
jobs:
  plain:
    run: {child("env", "SHARED", "env", "FROM_DOTENV", "env", "FIRST", "env", "QUOTED", "env", "FROM_ENV")}
  own:
    dotenv: [job.env]
    env: {{SHARED: job-env}}
    run: {child("env", "SHARED", "env", "JOB_DOTENV", "env", "FROM_DEFAULTS")}
  matrixed:
    matrix: {{SHARED: [matrix-value]}}
    run: {child("env", "SHARED", "env", "ORCHESTRATE_JOB")}
"""
DOTENV = """\
# a comment, then the forms python-dotenv and go-task read
FROM_DOTENV=dotenv
export FIRST=from-.env
SHARED=dotenv   # below env: loses
QUOTED="two words # not a comment"
"""


@pytest.fixture
def layered(tmp_path):
    (tmp_path / "jobs.yaml").write_text(LAYERS)
    (tmp_path / ".env").write_text(DOTENV)
    (tmp_path / ".env.local").write_text("FIRST=from-.env.local\nONLY_LOCAL='single quoted'\n")
    (tmp_path / "job.env").write_text("JOB_DOTENV=yes\nSHARED=job-dotenv\nFROM_DEFAULTS=job-dotenv\n")
    return tmp_path


def outputs(result) -> dict[str, str]:
    """`[job] NAME=value` lines of a stream run, as {"job NAME": value}."""
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith("[") and "=" in line:
            job, _, assignment = line[1:].partition("] ")
            name, _, value = assignment.partition("=")
            found[f"{job} {name}"] = value
    return found


def test_layers_in_order(layered):
    result = run_cli("run", "-o", "stream", cwd=layered)
    assert result.returncode == 0, result.stderr
    seen = outputs(result)
    assert seen["plain SHARED"] == "defaults-env"  # dotenv < env < defaults.env
    assert seen["plain FROM_DOTENV"] == "dotenv"
    assert seen["plain FIRST"] == "from-.env"  # the first dotenv file that sets it wins
    assert seen["plain QUOTED"] == "two words # not a comment"
    assert seen["plain FROM_ENV"] == "file-env"
    assert seen["own SHARED"] == "job-env"  # a job's dotenv < its env
    assert seen["own JOB_DOTENV"] == "yes"
    assert seen["own FROM_DEFAULTS"] == "job-dotenv"  # a job's dotenv > defaults.env
    assert seen["matrixed[SHARED=matrix-value] SHARED"] == "matrix-value"


def test_command_line_variables_sit_above_the_file_and_below_the_matrix(layered):
    result = run_cli("run", "-o", "stream", "SHARED=cli", "FROM_DOTENV=cli", "EMPTY=", cwd=layered)
    assert result.returncode == 0, result.stderr
    seen = outputs(result)
    assert seen["plain SHARED"] == "cli" and seen["own SHARED"] == "cli"
    assert seen["plain FROM_DOTENV"] == "cli"
    assert seen["matrixed[SHARED=matrix-value] SHARED"] == "matrix-value"
    assert seen["matrixed[SHARED=matrix-value] ORCHESTRATE_JOB"] == "matrixed[SHARED=matrix-value]"
    # Variables mixed with job names and options, with the old file-first form.
    mixed = run_cli("run", "jobs.yaml", "SHARED=x", "plain", "-o", "stream", cwd=layered)
    assert outputs(mixed) and set(outputs(mixed)) == {
        f"plain {n}" for n in ("SHARED", "FROM_DOTENV", "FIRST", "QUOTED", "FROM_ENV")
    }
    assert outputs(mixed)["plain SHARED"] == "x"


def test_the_caller_environment_is_below_everything(layered):
    result = run_cli(
        "run", "plain", "-o", "stream", cwd=layered, env={"SHARED": "caller", "FROM_ENV": "caller"}
    )
    assert outputs(result)["plain SHARED"] == "defaults-env"
    assert outputs(result)["plain FROM_ENV"] == "file-env"


def test_show_prints_the_resolved_job(layered):
    result = run_cli("show", "own", "SHARED=cli", cwd=layered)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "job:           own"
    assert "  SHARED=cli" in lines and "  JOB_DOTENV=yes" in lines and "  FROM_DEFAULTS=job-dotenv" in lines
    assert f"cwd:           {layered}" in lines
    for label in ("command:", "shell:", "needs:", "resources:", "timeout:", "retries:"):
        assert any(line.startswith(label) for line in lines), label
    matrix = run_cli("show", "matrixed", cwd=layered)
    assert "job:           matrixed[SHARED=matrix-value]" in matrix.stdout
    assert "  SHARED=matrix-value" in matrix.stdout.splitlines()
    unknown = run_cli("show", "ownn", cwd=layered)
    assert unknown.returncode == 2 and 'did you mean "own"?' in unknown.stderr


def test_a_missing_dotenv_file_is_skipped(tmp_path):
    (tmp_path / "jobs.yaml").write_text(
        f"dotenv: [missing.env]\njobs: {{a: {{run: {child('print', 'ran')!r}}}}}\n"
    )
    result = run_cli("run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "text, line",
    [
        ('GOOD=1\nBAD="no closing quote\n', 2),
        ("GOOD=1\n\n\n  'unclosed key=1\n", 4),
    ],
)
def test_a_malformed_dotenv_line_is_a_file_line_error(tmp_path, text, line):
    (tmp_path / "jobs.yaml").write_text("jobs: {a: {run: 'true', dotenv: [conf/x.env]}}\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.env").write_text(text)
    for command in ("run", "validate"):
        result = run_cli(command, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith(f"conf/x.env:{line}:1: cannot read this line as NAME=VALUE")
        assert result.stderr.count("\n") == 1


def test_dotenv_of_the_wrong_type_points_at_the_job_file(tmp_path):
    (tmp_path / "jobs.yaml").write_text("dotenv: .env\njobs: {a: {run: 'true'}}\n")
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("jobs.yaml:1:9: dotenv of the job file must be a list of files")
