"""Selections through the CLI: list and graph take jobs and tags as run does; --exclude is make's -o."""

import pytest
from conftest import child, run_cli

FILE = f"""
jobs:
  gen:
    run: {child("print", "ran gen")}
  build:
    run: {child("print", "ran build")}
    needs: [gen]
  test:
    run: {child("print", "ran test")}
    needs: [build]
    tags: [ci]
  docs:
    run: {child("print", "ran docs")}
    tags: [ci, slow]
  deploy:
    run: echo deploying "$TARGET"
    needs: [test, docs]
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "jobs.yaml").write_text(FILE)
    return tmp_path


def ran(result) -> list[str]:
    return [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("ran ")]


def test_list_shows_commands_and_takes_jobs_and_tags(folder):
    listing = run_cli("list", cwd=folder)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0].split()[:2] == ["name", "command"]
    deploy = next(line for line in listing.stdout.splitlines() if line.startswith("deploy"))
    assert 'echo deploying "$TARGET"' in deploy
    assert run_cli("list", "--names", "test", cwd=folder).stdout.split() == ["gen", "build", "test"]
    assert run_cli("list", "--names", "--tag", "slow", cwd=folder).stdout.split() == ["docs"]
    bad = run_cli("list", "tset", cwd=folder)
    assert bad.returncode == 2 and 'did you mean "test"?' in bad.stderr


def test_graph_takes_jobs_and_tags(folder):
    dot = run_cli("graph", "build", cwd=folder).stdout
    assert '"gen" -> "build"' in dot and '"test"' not in dot
    mermaid = run_cli("graph", "--tag", "slow", "--format", "mermaid", cwd=folder).stdout
    assert "docs" in mermaid and "build" not in mermaid


def test_exclude_is_not_run_and_counts_as_done(folder):
    result = run_cli("run", "deploy", "--exclude", "build", cwd=folder)
    assert result.returncode == 0, result.stderr
    # build is left out; gen is needed only through build, so it is not pulled in either.
    assert sorted(ran(result)) == ["docs", "test"]
    assert "gen" not in result.stdout and "build" not in result.stdout


def test_exclude_tag_is_repeatable_and_shows_in_list_and_dry_run(folder):
    names = run_cli("list", "--names", "deploy", "--exclude-tag", "slow", "--exclude", "gen", cwd=folder)
    assert names.stdout.split() == ["build", "test", "deploy"]
    dry = run_cli("run", "-n", "--exclude-tag", "ci", cwd=folder)
    order = [line.split(":")[0] for line in dry.stdout.splitlines()]
    # deploy's needs (test, docs) are both excluded: it is ready at once, beside gen.
    assert sorted(order) == ["build", "deploy", "gen"] and order.index("gen") < order.index("build")
    graph = run_cli("graph", "deploy", "--exclude", "test", cwd=folder).stdout
    assert '"test"' not in graph and '"docs" -> "deploy"' in graph


def test_excluding_an_unknown_job_or_tag_is_a_usage_error(folder):
    unknown = run_cli("run", "--exclude", "buidl", cwd=folder)
    assert unknown.returncode == 2 and 'no job named "buidl"; did you mean "build"?' in unknown.stderr
    tag = run_cli("run", "--exclude-tag", "nope", cwd=folder)
    assert tag.returncode == 2 and "no job has tag nope" in tag.stderr
