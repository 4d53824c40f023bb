"""Golden files of each scenario folder: validate, list and graph here, the run in test_scenarios.

validate, list and graph go through `cli.main` in this process, as in test_cli: they start
nothing, and 72 more interpreters would add half a minute. The normaliser is in golden.py.
Refresh every golden file after a reviewed change with `make golden` (pytest --update-golden),
then read the diff of tests/scenarios/*/golden/ before committing it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden import GoldenFiles, normalise_json, normalise_junit, normalise_stdout

from orchestrator.cli import main

SCENARIOS = Path(__file__).parent / "scenarios"
NAMES = sorted(path.name for path in SCENARIOS.iterdir() if path.is_dir())
# What each scenario's golden/ folder holds; test_scenarios writes the first four.
GOLDEN_FILES = {
    "stdout.txt",
    "stderr.txt",
    "report.json",
    "junit.xml",
    "validate.txt",
    "list.txt",
    "graph.dot",
    "graph.mmd",
}


@pytest.mark.parametrize("name", NAMES)
def test_validate_list_and_graph(name, golden, capsys, monkeypatch):
    monkeypatch.chdir(SCENARIOS / name)
    for file_name, command in (
        ("validate.txt", ["validate", "jobs.yaml"]),
        ("list.txt", ["list", "jobs.yaml"]),
        ("graph.dot", ["graph", "jobs.yaml"]),
        ("graph.mmd", ["graph", "--format", "mermaid", "jobs.yaml"]),
    ):
        assert main(command) == 0
        out, err = capsys.readouterr()
        assert err == ""
        golden.check(SCENARIOS / name / "golden" / file_name, out)


def test_every_scenario_has_exactly_its_golden_files(golden):
    if golden.update:
        pytest.skip("the golden files are being written")
    for name in NAMES:
        found = {path.name for path in (SCENARIOS / name / "golden").glob("*")}
        assert found == GOLDEN_FILES, f"{name}: run `make golden` to create missing ones, then review"


# -- the normaliser and the checker ---------------------------------------------------------

RUN_STDOUT = """\
--- slow (ok) ---
took 1.5s
--- fast (failed) ---
/tmp/x/sub
--- attempt 2 ---
job    status      exit    attempts    duration  last output
-----  --------  ------  ----------  ----------  -------------
slow   ok             0           1       12.3s
fast   failed         1           2        0.4s  in 2.0s.
later  skipped                    0              needs fast (failed)
crit   ok             0           1
critical path: slow -> later (1.5s of 1h02m03s)
1 ok, 1 failed, 1 skipped in 4m05s
"""


def test_stdout_keeps_all_but_durations_folder_and_block_order():
    # "crit" has no duration (a job that never started); the two lines under it are not rows.
    assert (
        normalise_stdout(RUN_STDOUT, "/tmp/x")
        == """\
--- fast (failed) ---
<dir>/sub
--- attempt 2 ---
--- slow (ok) ---
took 1.5s
job    status      exit    attempts    duration  last output
-----  --------  ------  ----------  ----------  -------------
slow   ok             0           1       <dur>
fast   failed         1           2       <dur>  in <dur>.
later  skipped                    0              needs fast (failed)
crit   ok             0           1
critical path: <path> (<dur> of <dur>)
1 ok, 1 failed, 1 skipped in <dur>
"""
    )


def test_stream_output_and_a_lone_summary_are_left_in_order():
    text = "[b] two\n[a] one\n"
    assert normalise_stdout(text, "/tmp/x") == text
    assert normalise_stdout("", "/tmp/x") == ""


def test_json_volatile_values_become_placeholders_and_nulls_stay():
    report = {
        "job_file": "/tmp/x/jobs.yaml",
        "run_id": "af44080e30b6",
        "started": "2026-11-29T16:03:05.189Z",
        "elapsed": 0.626,
        "summary": "1 ok, 1 cancelled in 0.6s",
        "critical_path_seconds": 0.613,
        "jobs": [
            {"name": "a", "attempts": 1, "ready": "2026-11-29T16:03:05.189Z", "duration": 0.613, "host": "h"},
            {"name": "b", "attempts": 0, "start": None, "duration": None, "reason": "id af44080e30b6"},
        ],
    }
    assert json.loads(normalise_json(json.dumps(report), "/tmp/x")) == {
        "job_file": "<dir>/jobs.yaml",
        "run_id": "<run-id>",
        "started": "<time>",
        "elapsed": "<seconds>",
        "summary": "1 ok, 1 cancelled in <dur>",
        "critical_path_seconds": "<seconds>",
        "jobs": [
            {"name": "a", "attempts": 1, "ready": "<time>", "duration": "<seconds>", "host": "<host>"},
            {"name": "b", "attempts": 0, "start": None, "duration": None, "reason": "id <run-id>"},
        ],
    }


def test_junit_times_and_paths():
    text = '<testsuite time="0.626" timestamp="2026-11-29T16:03:05"><testcase name="a" time="0.000">'
    text += "<failure>/tmp/x/log</failure>"
    assert normalise_junit(text, "/tmp/x") == (
        '<testsuite time="<seconds>" timestamp="<time>"><testcase name="a" time="<seconds>">'
        "<failure><dir>/log</failure>"
    )


def test_a_difference_fails_with_a_diff_and_the_refresh_command(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("one\ntwo\n")
    GoldenFiles(update=False).check(path, "one\ntwo\n")
    with pytest.raises(pytest.fail.Exception) as caught:
        GoldenFiles(update=False).check(path, "one\nthree\n")
    assert "-two\n+three\n" in str(caught.value) and "make golden" in str(caught.value)
    with pytest.raises(pytest.fail.Exception) as caught:
        GoldenFiles(update=False).check(tmp_path / "missing.txt", "x")
    assert "missing" in str(caught.value) and "make golden" in str(caught.value)


def test_updating_writes_once_then_later_runs_must_agree(tmp_path):
    path = tmp_path / "golden" / "out.txt"
    files = GoldenFiles(update=True)
    files.check(path, "from processes 1\n")
    assert path.read_text() == "from processes 1\n"
    files.check(path, "from processes 1\n")
    with pytest.raises(pytest.fail.Exception) as caught:
        files.check(path, "from processes 2\n")
    assert "--processes 1 and 2" in str(caught.value)
    assert path.read_text() == "from processes 1\n"
