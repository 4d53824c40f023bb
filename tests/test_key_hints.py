"""Did-you-mean that points the right way: other tools' key names, and keys indented too far out."""

import pytest
from conftest import run_cli

from orchestrator.errors import JobFileError
from orchestrator.loader import load_text


def refused(tmp_path, text: str) -> str:
    (tmp_path / "jobs.yaml").write_text(text)
    result = run_cli("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr.rstrip("\n")


def refused_here(text: str) -> str:
    """The line `validate` prints for this jobs.yaml (the tests below check how it prints
    one: exit 2, that one line), from the loader in this process."""
    with pytest.raises(JobFileError) as caught:
        load_text(text, "jobs.yaml")
    return str(caught.value)


@pytest.mark.parametrize(
    "written, meant",
    [
        ("deps", "needs"),
        ("depends_on", "needs"),
        ("requires", "needs"),
        ("cmd", "run"),
        ("cmds", "run"),
        ("command", "run"),
        ("script", "run"),
        ("dir", "cwd"),
        ("workdir", "cwd"),
        ("timeout_s", "timeout"),
    ],
)
def test_other_tools_key_names_point_to_ours(written, meant):
    text = f"jobs:\n  b: {{run: 'true'}}\n  a:\n    run: 'true'\n    {written}: [b]\n"
    if meant == "run":
        text = f"jobs:\n  b: {{run: 'true'}}\n  a:\n    {written}: [b]\n"
    line = 5 if meant != "run" else 4
    assert refused_here(text).startswith(
        f'jobs.yaml:{line}:5: unknown key "{written}" in job "a"; did you mean "{meant}"?'
    )


def test_an_alias_in_defaults_points_to_the_default_key(tmp_path):
    message = refused(tmp_path, "defaults:\n  workdir: src\njobs:\n  a: {run: 'true'}\n")
    assert message == 'jobs.yaml:2:3: unknown key "workdir" in defaults; did you mean "cwd"?'


def test_cmds_explains_that_run_is_one_command(tmp_path):
    message = refused(tmp_path, "jobs:\n  a:\n    cmds: [make, make test]\n")
    assert 'did you mean "run"?' in message and "join steps with &&" in message


def test_a_job_key_directly_under_jobs_belongs_to_the_job_above(tmp_path):
    message = refused(tmp_path, "jobs:\n  lint: {run: 'true'}\n  build:\n    run: make\n  needs: [lint]\n")
    assert message == (
        'jobs.yaml:5:3: "needs" sits directly under jobs:, so it reads as a job named needs; '
        'it probably belongs to the job above, "build": indent it one level more'
    )


def test_an_alias_directly_under_jobs_says_both(tmp_path):
    message = refused(tmp_path, "jobs:\n  build:\n    run: make\n  depends_on:\n    - x\n")
    assert message.startswith('jobs.yaml:4:3: "depends_on" sits directly under jobs:')
    assert message.endswith('"build": indent it one level more and call it needs')


def test_an_env_mapping_directly_under_jobs(tmp_path):
    message = refused(tmp_path, "jobs:\n  build:\n    run: make\n  env:\n    CC: clang\n")
    assert message.endswith('probably belongs to the job above, "build": indent it one level more')


def test_a_job_key_at_the_top_level(tmp_path):
    message = refused(tmp_path, "jobs:\n  build:\n    run: make\nneeds: [x]\n")
    assert message == (
        'jobs.yaml:4:1: unknown key "needs" at the top level; '
        'it probably belongs to the job above, "build": indent it under that job'
    )
    first = refused(tmp_path, "timeout: 5m\njobs:\n  build: {run: make}\n")
    assert first.endswith("timeout is a job key: indent it under a job in jobs:")


def test_a_real_job_named_like_a_key_is_fine(tmp_path):
    (tmp_path / "jobs.yaml").write_text("jobs:\n  script: {run: 'true'}\n  env: {run: 'true'}\n")
    assert run_cli("validate", cwd=tmp_path).returncode == 0
