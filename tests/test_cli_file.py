"""Finding the job file (-f, discovery up the tree, stdin, the old FILE form) and the help."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import child, run_cli

from orchestrator.cli import build_parser, subparsers
from orchestrator.discovery import JOB_FILE_NAMES

JOBS = f"""
jobs:
  hello:
    run: {child("print", "hello from the job")}
"""


def test_discovery_finds_the_file_in_a_parent_folder(tmp_path):
    (tmp_path / "jobs.yaml").write_text(JOBS)
    deeper = tmp_path / "src" / "pkg"
    deeper.mkdir(parents=True)
    result = run_cli("run", "hello", cwd=deeper)
    assert result.returncode == 0, result.stderr
    assert "hello from the job" in result.stdout
    # .orchestrate/ goes beside the job file, not into the folder the command ran in.
    assert (tmp_path / ".orchestrate").is_dir() and not (deeper / ".orchestrate").exists()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_job_without_cwd_runs_beside_its_job_file_wherever_it_is_started(tmp_path, processes):
    """As with go-task and just: `show` says so, and inputs and outputs are read from there."""
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        "  where: {run: pwd > where.txt, outputs: [where.txt]}\n"
        "  there: {run: pwd > there.txt, cwd: sub}\n"
    )
    deeper = tmp_path / "sub"
    deeper.mkdir()
    result = run_cli("run", "--processes", processes, "--report-file", tmp_path / "r.json", cwd=deeper)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "where.txt").read_text().strip() == str(tmp_path)
    assert (deeper / "there.txt").read_text().strip() == str(deeper)
    assert not (deeper / "where.txt").exists()
    jobs = tmp_path / "jobs.yaml"
    again = run_cli("run", "-f", jobs, "where", "--processes", processes, cwd=tmp_path.parent)
    assert "up-to-date" in again.stdout, again.stdout + again.stderr


def test_discovery_prefers_orchestrate_yaml_and_the_nearest_folder(tmp_path):
    (tmp_path / "jobs.yaml").write_text("jobs: {outer: {run: 'true'}}\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "jobs.yml").write_text("jobs: {nearest: {run: 'true'}}\n")
    assert run_cli("list", "--names", cwd=inner).stdout.split() == ["nearest"]
    (inner / "orchestrate.yaml").write_text("jobs: {first-name: {run: 'true'}}\n")
    assert run_cli("list", "--names", cwd=inner).stdout.split() == ["first-name"]
    assert run_cli("validate", cwd=inner).stdout == "orchestrate.yaml: 1 jobs, ok\n"


def test_no_file_found_says_which_names_and_where(tmp_path):
    for command in ("run", "validate", "list", "graph"):
        result = run_cli(command, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        for name in JOB_FILE_NAMES:
            assert name in result.stderr
        assert f"in {tmp_path} and each parent folder up to /" in result.stderr
        assert "-f FILE" in result.stderr


def test_file_option_on_every_subcommand(tmp_path):
    path = tmp_path / "ci.yaml"
    path.write_text(JOBS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # One helper gives every subcommand both spellings: each is tried, the long one on `list`.
    assert run_cli("validate", "-f", path, cwd=elsewhere).returncode == 0
    assert run_cli("list", "--file", path, "--names", cwd=elsewhere).stdout == "hello\n"
    assert '"hello"' in run_cli("graph", "-f", path, cwd=elsewhere).stdout
    assert "command:" in run_cli("show", "-f", path, "hello", cwd=elsewhere).stdout
    result = run_cli("run", "-f", path, "hello", cwd=elsewhere)
    assert result.returncode == 0 and "hello from the job" in result.stdout


def test_the_old_form_with_the_file_first_keeps_working(tmp_path):
    (tmp_path / "my.yml").write_text(JOBS)
    for args in (("run", "my.yml"), ("run", "my.yml", "hello"), ("run", "my.yml", "-j", "1", "hello")):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "hello from the job" in result.stdout
    assert run_cli("list", "my.yml", "--names", cwd=tmp_path).stdout.split() == ["hello"]
    assert run_cli("validate", "my.yml", cwd=tmp_path).returncode == 0


def test_stdin_is_the_job_file_with_paths_from_the_current_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".env").write_text("GREETING=from-dotenv\n")
    text = f"""
dotenv: [.env]
jobs:
  where:
    run: {child("env", "GREETING")} && pwd
    cwd: sub
"""
    result = run_cli("run", "-f", "-", "-o", "stream", cwd=tmp_path, input=text)
    assert result.returncode == 0, result.stderr
    assert "GREETING=from-dotenv" in result.stdout
    assert f"[where] {tmp_path / 'sub'}" in result.stdout
    broken = run_cli("validate", "-f", "-", cwd=tmp_path, input="jobs:\n  a: {run: x, nedds: [b]}\n")
    assert broken.returncode == 2
    assert broken.stderr.startswith('<stdin>:2:15: unknown key "nedds"')


def test_a_missing_named_file_has_no_made_up_position(tmp_path):
    for args in (("run", "nofile.yaml"), ("validate", "nofile.yaml"), ("list", "-f", "nofile.yaml")):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr == "orchestrate: error: no such file: nofile.yaml\n"


# -- help ---------------------------------------------------------------------------------


def test_bare_orchestrate_prints_the_help_and_exits_2(tmp_path):
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: orchestrate") and "run the named jobs" in result.stderr
    assert "exit codes:" in result.stderr


def test_every_argument_of_every_subcommand_has_help():
    for name, parser in subparsers(build_parser()).items():
        if name.startswith("__"):
            continue  # the hidden callback of the completion scripts
        for action in parser._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        assert "exit codes:" in (parser.epilog or ""), name


def test_help_shows_examples_and_exit_codes():
    result = run_cli("run", "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "orchestrate run --tag ci" in result.stdout
    assert "124  the run's --timeout expired" in result.stdout  # raw: the table kept its lines
    assert "orchestrate.yaml, orchestrate.yml, jobs.yaml, jobs.yml" in result.stdout
    top = run_cli("--help").stdout
    assert "show" in top and "completion" in top and "__complete" not in top


@pytest.mark.parametrize(
    "args, command",
    [
        (("list", "FILE.yaml", "--tag"), "list"),
        (("list", "FILE.yaml", "--tagg", "x"), "list"),
        (("validate", "FILE.yaml", "extra"), "validate"),
        (("graph", "--format", "png"), "graph"),
        (("run", "--no-such-option"), "run"),
    ],
)
def test_a_bad_argument_prints_the_subcommands_usage(args, command):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: orchestrate {command} "), result.stderr
    assert f"orchestrate {command}: error:" in result.stderr


def test_console_script_is_the_same_program(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "orchestrate")
    if not os.path.exists(script):
        pytest.skip("orchestrate is not installed next to this python")
    (tmp_path / "orchestrate.yaml").write_text(JOBS)
    result = subprocess.run([script, "list", "--names"], cwd=tmp_path, capture_output=True, text=True)
    assert result.stdout.split() == ["hello"]


def test_plain_make_lists_the_targets():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "--no-print-directory", "-C", root], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "make targets:"
    assert {line.split()[1] for line in lines[1:-1]} >= {"help", "run", "test", "bench", "clean"}
