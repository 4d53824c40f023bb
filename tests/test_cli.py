"""The command line: subcommands, usage errors and bad files, as a user meets them."""

import json
import os
import re

import pytest
from conftest import run_cli

from orchestrator import __version__
from orchestrator.cli import main

BROKEN = os.path.join(os.path.dirname(__file__), "broken")
DEMO = os.path.join(os.path.dirname(__file__), "..", "jobs", "demo.yaml")


def broken_files():
    with open(os.path.join(BROKEN, "expected.txt")) as expected:
        return [line.split()[0] for line in expected if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("name", broken_files())
def test_every_broken_file_is_one_clear_line_and_exit_2(name, capsys):
    path = os.path.join(BROKEN, name)
    for command in ("validate", "run"):
        assert main([command, path]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert re.match(re.escape(path) + r":\d+:\d+: \S", err), err


def test_a_missing_file_and_a_directory_are_errors_not_tracebacks(tmp_path):
    for path, message in ((tmp_path / "missing.yaml", "no such file: "), (tmp_path, "")):
        result = run_cli("run", path)
        assert result.returncode == 2, result.stderr
        # Nothing of the file was read: no made-up :1:1: position.
        assert result.stderr.startswith(f"orchestrate: error: {message}{path}"), result.stderr
        assert ":1:1:" not in result.stderr and "Traceback" not in result.stderr


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"orchestrate {__version__}"


def test_validate_list_graph_and_dry_run(capsys):
    assert main(["validate", DEMO]) == 0
    assert "9 jobs, ok" in capsys.readouterr().out
    assert main(["list", DEMO, "--table-format", "github"]) == 0
    listing = capsys.readouterr().out
    assert "| package" in listing and "unit, build[ARCH=x86_64], build[ARCH=arm64], seed, flaky" in listing
    assert main(["graph", DEMO]) == 0
    assert '"lint" -> "unit"' in capsys.readouterr().out
    assert main(["graph", DEMO, "--format", "mermaid"]) == 0
    assert capsys.readouterr().out.startswith("graph TD")
    assert main(["run", DEMO, "--dry-run"]) == 0
    order = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert order.index("lint") < order.index("unit") < order.index("package")
    assert len(order) == 9


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", DEMO, "-j", "0"], "not a positive whole number"),
        (["run", DEMO, "--timeout", "soon"], "is not a duration"),
        (["run", DEMO, "--table-format", "fancy"], "unknown table format 'fancy'; choose one of"),
        (["run", DEMO, "packge"], 'did you mean "package"'),
        (["run", DEMO, "--tag", "nope"], "no job has tag nope"),
        (["run", DEMO, "--report-file", "out.txt"], "unknown extension '.txt'; use one of"),
        (["run", DEMO, "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_the_way_out(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_table_format_and_report_files(tmp_path):
    report_json, report_xml = tmp_path / "r.json", tmp_path / "r.xml"
    result = run_cli(
        "run",
        DEMO,
        "--table-format",
        "github",
        "-o",
        "none",
        "--log-dir",
        tmp_path / "logs",
        "--report-file",
        report_json,
        "--report-file",
        report_xml,
    )
    assert result.returncode == 0, result.stderr
    assert "| job" in result.stdout and "8 ok, 1 allowed in" in result.stdout
    assert report_json.exists() and report_xml.read_text().startswith("<?xml")
    assert (tmp_path / "logs" / "package.log").read_text() == "hello from package\n"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_silent_job_leaves_no_log_and_no_stale_one(tmp_path, write_jobs, processes):
    jobs = write_jobs("jobs:\n  talk: {run: echo hi}\n  quiet: {run: 'true'}\n")
    logs = tmp_path / ".orchestrate" / "logs" / "jobs.yaml"
    logs.mkdir(parents=True)
    (logs / "quiet.log").write_text("output of an earlier run\n")
    (logs / "talk.log").write_text("a longer output of an earlier run\n")
    report = tmp_path / "report.json"
    result = run_cli("run", jobs, "--report-file", report, "--processes", processes)
    assert result.returncode == 0, result.stderr
    assert (logs / "talk.log").read_text() == "hi\n"
    assert not (logs / "quiet.log").exists()
    by_name = {job["name"]: job for job in json.loads(report.read_text())["jobs"]}
    assert by_name["quiet"]["log_path"] is None and by_name["talk"]["log_path"] == str(logs / "talk.log")


def test_a_rerun_truncates_a_printing_jobs_log_in_place(tmp_path, write_jobs):
    # Removing and creating the file again costs ext4 a scan past recently deleted inodes.
    jobs = write_jobs("jobs:\n  talk: {run: echo hi}\n")
    log = tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "talk.log"
    assert run_cli("run", jobs).returncode == 0
    first = log.stat().st_ino
    log.write_text("a longer output of an earlier run\n")
    assert run_cli("run", jobs).returncode == 0
    assert log.read_text() == "hi\n" and log.stat().st_ino == first


def test_jobs_do_not_inherit_the_callers_descriptors(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  fds: {run: [ls, /proc/self/fd]}\n")
    extra_read, extra_write = os.pipe()
    try:
        result = run_cli("run", jobs, "-o", "none", pass_fds=(extra_read, extra_write))
    finally:
        os.close(extra_read)
        os.close(extra_write)
    assert result.returncode == 0, result.stderr
    listed = (tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "fds.log").read_text().split()
    assert {"0", "1", "2"} <= set(listed)
    # Only our own jobserver's pipe (for makes inside jobs) is passed on, never the caller's.
    assert str(extra_read) not in listed and str(extra_write) not in listed


def test_a_run_that_renders_no_table_never_imports_tabulate(write_jobs):
    # tabulate's import costs ~35 ms of start-up; only a table or a report file needs it.
    jobs = write_jobs("jobs:\n  a: {run: 'true'}\n")
    quiet = run_cli("run", jobs, "--report", "none", "-o", "none", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert quiet.returncode == 0 and "| orchestrator.run" in quiet.stderr
    assert "tabulate" not in quiet.stderr
    table = run_cli("run", jobs, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert table.returncode == 0 and "tabulate" in table.stderr


def test_a_run_builds_only_its_own_parser_with_the_same_usage_and_errors(tmp_path):
    """The other commands' parsers cost every run ~3.5 ms; a run never shows them."""
    from orchestrator import cli

    assert list(cli.subparsers(cli.build_parser("run"))) == ["run"]
    assert {"run", "validate", "history", "__complete"} <= set(cli.subparsers(cli.build_parser()))
    args = cli.parse(["run", "build", "-j", "2"])
    assert args.targets == ["build"] and args.jobs == 2 and args.parser.prog == "orchestrate run"
    result = run_cli("run", "--bogus", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("usage: orchestrate run ")
    assert "orchestrate run: error: unrecognized arguments: --bogus" in result.stderr
    assert "invalid choice: 'runn'" in run_cli("runn", cwd=tmp_path).stderr  # the whole parser
