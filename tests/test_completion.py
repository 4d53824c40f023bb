"""`orchestrate completion`: the bash script run in a real bash; zsh and fish scripts parsed."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import run_cli

JOBS = """
jobs:
  lint: {run: 'true', tags: [fast]}
  build:
    run: 'true'
    matrix: {ARCH: [x86_64, arm64]}
    tags: [slow]
"""
# Fill in what bash gives a completion function, from a command line typed so far.
COMPLETE = r"""
source <(orchestrate completion bash)
complete -p orchestrate
t() {
    COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
    read -ra COMP_WORDS <<< "$COMP_LINE"
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    [[ "$COMP_LINE" == *" " ]] && COMP_CWORD=${#COMP_WORDS[@]}
    _orchestrate
    echo "$1 => ${COMPREPLY[*]}"
}
"""


@pytest.fixture
def project(tmp_path):
    """A folder with a job file, a sub-folder to complete from, and `orchestrate` on PATH."""
    (tmp_path / "jobs.yaml").write_text(JOBS)
    (tmp_path / "src").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "orchestrate"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m orchestrator "$@"\n')
    wrapper.chmod(0o755)
    return tmp_path


def bash(project, *lines: str) -> dict[str, str]:
    script = COMPLETE + "\n".join(f"t {line!r}" for line in lines)
    env = dict(os.environ, PATH=f"{project / 'bin'}:{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "-c", script], cwd=project / "src", env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("complete -F _orchestrate orchestrate")
    return dict(line.split(" => ", 1) for line in result.stdout.splitlines()[1:])


def test_bash_completes_job_names_quoted_and_tags(project):
    seen = bash(
        project,
        "orchestrate run b",
        "orchestrate run build[ARCH=a",
        "orchestrate list --tag s",
        "orchestrate run --exclude-tag ",
        "orchestrate run --exclude l",
    )
    # Brackets quoted so the shell neither globs nor splits the name.
    assert seen["orchestrate run b"].split() == ["build", r"build\[ARCH=x86_64\]", r"build\[ARCH=arm64\]"]
    # After an "=", bash replaces only the rest of the word.
    assert seen["orchestrate run build[ARCH=a"] == r"arm64\]"
    assert seen["orchestrate list --tag s"] == "slow"
    assert seen["orchestrate run --exclude-tag "].split() == ["fast", "slow"]
    assert seen["orchestrate run --exclude l"] == "lint"


def test_bash_completes_subcommands_options_and_files(project):
    seen = bash(
        project,
        "orchestrate ",
        "orchestrate run --keep",
        "orchestrate graph --format ",
        "orchestrate completion z",
    )
    assert seen["orchestrate "].split() == [
        "run",
        "history",
        "report",
        "validate",
        "list",
        "graph",
        "show",
        "explain",
        "schema",
        "completion",
    ]
    assert seen["orchestrate run --keep"] == "--keep-going"
    assert seen["orchestrate graph --format "].split() == ["dot", "mermaid"]
    assert seen["orchestrate completion z"] == "zsh"


def test_the_file_named_on_the_line_is_used(project):
    (project / "src" / "other.yaml").write_text("jobs: {only-here: {run: 'true'}}\n")
    seen = bash(
        project, "orchestrate run -f other.yaml o", "orchestrate run other.yaml o", "orchestrate run -f oth"
    )
    assert seen["orchestrate run -f other.yaml o"] == "only-here"
    assert seen["orchestrate run other.yaml o"] == "only-here"
    assert seen["orchestrate run -f oth"] == "other.yaml"


def test_a_broken_file_completes_nothing_quietly(project):
    (project / "jobs.yaml").write_text("jobs: [\n")
    result = run_cli("__complete", "--", "run", "", cwd=project)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr == ""


@pytest.mark.parametrize("shell, check", [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])])
def test_zsh_and_fish_scripts_parse(tmp_path, shell, check):
    result = run_cli("completion", shell)
    assert result.returncode == 0 and "__complete" in result.stdout
    if shutil.which(check[0]) is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp_path / f"orchestrate.{shell}"
    path.write_text(result.stdout)
    parsed = subprocess.run([*check, str(path)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr


def shell_env(project) -> dict[str, str]:
    return dict(os.environ, PATH=f"{project / 'bin'}:{os.environ['PATH']}")


def test_zsh_function_offers_job_names_and_tags(project):
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    # compadd and compdef stand in for zsh's completion system: they print what they are given.
    script = r"""
compdef() { : }
compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@" }
eval "$(orchestrate completion zsh)"
words=(orchestrate run b); CURRENT=3; _orchestrate; print -- ---
words=(orchestrate run --tag ''); CURRENT=4; _orchestrate
"""
    result = subprocess.run(
        ["zsh", "-f", "-c", script],
        cwd=project / "src",
        env=shell_env(project),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    jobs, tags = result.stdout.split("---\n")
    assert jobs.split() == ["build", "build[ARCH=x86_64]", "build[ARCH=arm64]"]
    assert tags.split() == ["fast", "slow"]


def test_fish_completes_job_names_and_tags(project):
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    script = (
        "source (orchestrate completion fish | psub)\n"
        "complete -C 'orchestrate run b'; echo ---; complete -C 'orchestrate list --tag '"
    )
    result = subprocess.run(
        ["fish", "--no-config", "-c", script],
        cwd=project / "src",
        env=shell_env(project),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    jobs, tags = result.stdout.split("---\n")
    assert sorted(jobs.split()) == ["build", "build[ARCH=arm64]", "build[ARCH=x86_64]"]
    assert tags.split() == ["fast", "slow"]
