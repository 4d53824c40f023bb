"""$NAME and ${NAME} in `inputs`/`outputs`: each matrix instance has its own paths; through the real CLI."""

from conftest import run_cli, run_json

BUILD = """\
jobs:
  build:
    matrix:
      OS: [linux, mac]
    run: "echo $OS > out-$OS.txt && echo $OS >> ran.log"
    outputs: ["out-${OS}.txt"]
"""


def validate(directory, text, *args, **kwargs):
    (directory / "jobs.yaml").write_text(text)
    return run_cli("validate", directory / "jobs.yaml", *args, cwd=directory, **kwargs)


def test_each_matrix_instance_builds_its_own_output_and_is_then_up_to_date(tmp_path):
    (tmp_path / "jobs.yaml").write_text(BUILD)
    statuses, ran = run_json(tmp_path)
    assert statuses == {"build[OS=linux]": "ok", "build[OS=mac]": "ok"} and ran == ["linux", "mac"]
    assert (tmp_path / "out-linux.txt").read_text() == "linux\n"
    assert (tmp_path / "out-mac.txt").read_text() == "mac\n"
    statuses, ran = run_json(tmp_path)
    assert set(statuses.values()) == {"up-to-date"} and ran == []
    (tmp_path / "out-mac.txt").unlink()  # each instance watches its own file
    statuses, ran = run_json(tmp_path)
    assert statuses == {"build[OS=linux]": "up-to-date", "build[OS=mac]": "ok"} and ran == ["mac"]


def test_an_unknown_variable_is_an_error_at_the_path(tmp_path):
    result = validate(tmp_path, BUILD.replace("${OS}", "${ARCH}"))
    assert result.returncode == 2
    assert result.stderr == (
        f'{tmp_path / "jobs.yaml"}:6:15: unknown variable ARCH in output "out-${{ARCH}}.txt" of job '
        '"build": define it in env or matrix, or write $$ for a literal $\n'
    )


def test_the_callers_environment_does_not_reach_paths(tmp_path):
    # A path must not depend on the shell that runs orchestrate.
    text = 'jobs:\n  a:\n    run: "true"\n    inputs: [src/$DIR/x.c]\n'
    result = validate(tmp_path, text, env={"DIR": "from-the-caller"})
    assert result.returncode == 2
    assert result.stderr.startswith(f"{tmp_path / 'jobs.yaml'}:4:14: unknown variable DIR in input")


def test_a_dollar_that_starts_no_name_is_an_error(tmp_path):
    result = validate(tmp_path, 'jobs:\n  a:\n    run: "true"\n    outputs: ["cost-$.txt"]\n')
    assert result.returncode == 2
    assert result.stderr.startswith(
        f'{tmp_path / "jobs.yaml"}:4:15: a "$" in output "cost-$.txt" of job "a" starts no variable '
        "name: write $$ for a literal $"
    )


def test_double_dollar_is_a_literal_dollar(tmp_path):
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  a:\n    run: \"touch 'cost-$1.txt' && echo a >> ran.log\"\n    outputs: [cost-$$1.txt]\n"
    )
    shown = run_cli("show", "-f", tmp_path / "jobs.yaml", "a", cwd=tmp_path)
    assert "outputs:       cost-$1.txt" in shown.stdout
    assert run_json(tmp_path) == ({"a": "ok"}, ["a"])
    assert (tmp_path / "cost-$1.txt").exists()
    assert run_json(tmp_path) == ({"a": "up-to-date"}, [])


def test_the_files_layers_and_command_line_values_fill_paths(tmp_path):
    (tmp_path / ".env").write_text("FROM_DOTENV=d\n")
    text = (
        "dotenv: [.env]\nenv: {TOP: t, LEVEL: file}\ndefaults: {env: {LEVEL: defaults}}\n"
        "jobs:\n  a:\n    run: 'true'\n    env: {OWN: o}\n"
        "    inputs: [$FROM_DOTENV/$TOP/$LEVEL/$OWN/$MODE.txt]\n"
    )
    (tmp_path / "jobs.yaml").write_text(text)
    shown = run_cli("show", "-f", tmp_path / "jobs.yaml", "a", "MODE=fast", cwd=tmp_path)
    assert "inputs:        d/t/defaults/o/fast.txt" in shown.stdout, shown.stderr


def test_an_expanded_output_read_as_a_literal_input_becomes_a_need(tmp_path):
    (tmp_path / "jobs.yaml").write_text(
        BUILD + "  use:\n    run: cat out-linux.txt > used.txt && echo use >> ran.log\n"
        "    inputs: [out-linux.txt]\n    outputs: [used.txt]\n"
    )
    shown = run_cli("show", "-f", tmp_path / "jobs.yaml", "use", cwd=tmp_path)
    assert "needs:         build[OS=linux]" in shown.stdout
    statuses, ran = run_json(tmp_path, "use")  # selecting use runs the instance it needs
    assert statuses == {"build[OS=linux]": "ok", "use": "ok"} and ran == ["linux", "use"]
    assert (tmp_path / "used.txt").read_text() == "linux\n"


def test_instances_that_still_share_an_output_are_an_error(tmp_path):
    # ${X} is the same in both instances: they would both write out-1.txt.
    result = validate(tmp_path, 'env: {X: "1"}\n' + BUILD.replace("${OS}", "${X}"))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f'{tmp_path / "jobs.yaml"}:7:15: output "out-${{X}}.txt" (out-1.txt) of job "build[OS=mac]" '
        'is also an output of job "build[OS=linux]" (line 7)'
    )


def test_two_items_that_become_one_path_are_an_error(tmp_path):
    result = validate(tmp_path, 'env: {X: "1"}\njobs:\n  a:\n    run: "true"\n    inputs: [in-$X, in-1]\n')
    assert result.returncode == 2
    assert result.stderr.startswith(
        f'{tmp_path / "jobs.yaml"}:5:21: "in-1" is listed twice in inputs of job "a" (as "in-$X" and "in-1")'
    )
