"""Up-to-date checking (`inputs`, `outputs`), through the real CLI, and its decision logic."""

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import child, run_cli, run_json, run_watching, wait_for

from orchestrator.hashing import Hasher
from orchestrator.model import Job
from orchestrator.uptodate import Checker, MemoryStore, Snapshot, first_reason

# gen writes gen.txt from src.txt; copy copies gen.txt; count counts src.txt and other.txt.
# Each job appends its name to ran.log, so a test sees exactly what ran.
BUILD = """
env:
  MODE: debug
jobs:
  gen:
    run: cat src.txt > gen.txt && echo gen >> ran.log
    inputs: [src.txt]
    outputs: [gen.txt]
  copy:
    run: cp gen.txt copy.txt && echo copy >> ran.log
    inputs: [gen.txt]
    outputs: [copy.txt]
  count:
    run: cat src.txt other.txt | wc -c > count.txt && echo count >> ran.log
    inputs: [src.txt, other.txt]
    outputs: [count.txt]
"""


@pytest.fixture
def build(tmp_path):
    (tmp_path / "src.txt").write_text("one\n")
    (tmp_path / "other.txt").write_text("two\n")
    path = tmp_path / "jobs.yaml"
    path.write_text(BUILD)
    return tmp_path


def explain(directory, *args):
    result = run_cli("explain", "-f", directory / "jobs.yaml", *args, cwd=directory)
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def rewrite(path, text):
    """Write new contents with a new mtime, as an editor would."""
    path.write_text(text)
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))


def test_second_run_is_all_up_to_date(build):
    statuses, ran = run_json(build)
    assert set(statuses.values()) == {"ok"} and ran == ["copy", "count", "gen"]
    statuses, ran = run_json(build)
    assert statuses == {"gen": "up-to-date", "copy": "up-to-date", "count": "up-to-date"}
    assert ran == []
    table = run_cli("run", "-f", build / "jobs.yaml", cwd=build).stdout
    assert "3 up-to-date" in table


def test_touch_without_change_stays_up_to_date(build):
    run_json(build)
    later = time.time() + 10
    os.utime(build / "src.txt", (later, later))
    os.utime(build / "gen.txt", (later, later))
    assert run_json(build)[1] == []


def test_an_edited_input_reruns_its_job_and_only_dependents_whose_inputs_changed(build):
    run_json(build)
    rewrite(build / "other.txt", "changed\n")
    statuses, ran = run_json(build)
    assert ran == ["count"]
    assert statuses["gen"] == statuses["copy"] == "up-to-date"
    rewrite(build / "src.txt", "new\n")
    assert run_json(build)[1] == ["copy", "count", "gen"]


def test_restat_a_need_rewriting_identical_outputs_does_not_rerun_dependents(tmp_path):
    # stamp needs gen but reads none of its files: only gen's output hashes tie them.
    (tmp_path / "src.txt").write_text("one\n")
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        "  gen:\n    run: head -c 3 src.txt > gen.txt && echo gen >> ran.log\n"
        "    inputs: [src.txt]\n    outputs: [gen.txt]\n"
        "  stamp:\n    run: date +%s%N > stamp.txt && echo stamp >> ran.log\n"
        "    needs: [gen]\n    outputs: [stamp.txt]\n"
    )
    assert run_json(tmp_path)[1] == ["gen", "stamp"]
    rewrite(tmp_path / "src.txt", "one more\n")  # the same first 3 bytes: gen.txt is unchanged
    statuses, ran = run_json(tmp_path)
    assert ran == ["gen"] and statuses["stamp"] == "up-to-date"
    rewrite(tmp_path / "src.txt", "two\n")
    assert explain(tmp_path) == {"gen": "input src.txt changed", "stamp": "needs gen (it would run)"}
    run_json(tmp_path, "gen")
    assert explain(tmp_path) == {"gen": "up to date", "stamp": "needs gen (its outputs changed)"}
    assert run_json(tmp_path)[1] == ["stamp"]


def test_a_deleted_or_edited_output_reruns_its_job(build):
    run_json(build)
    (build / "copy.txt").unlink()
    assert explain(build)["copy"] == "output copy.txt missing"
    assert run_json(build)[1] == ["copy"]
    rewrite(build / "count.txt", "edited by hand\n")
    assert explain(build)["count"] == "output count.txt changed since it was made"
    assert run_json(build)[1] == ["count"]


def test_a_changed_command_or_env_value_reruns(build):
    run_json(build)
    jobfile = build / "jobs.yaml"
    jobfile.write_text(BUILD.replace("wc -c > count.txt", "wc -c >count.txt"))
    assert explain(build)["count"] == "command changed"
    assert run_json(build)[1] == ["count"]
    jobfile.write_text(BUILD.replace("wc -c > count.txt", "wc -c >count.txt").replace("debug", "release"))
    assert explain(build) == {name: "env MODE changed" for name in ("gen", "count", "copy")}
    run_json(build)
    # NAME=VALUE on the command line is part of the environment too.
    result = run_cli("explain", "-f", jobfile, "gen", "MODE=fast", cwd=build)
    assert result.stdout == "gen: env MODE changed\n"


def test_a_changed_shell_or_cwd_reruns(tmp_path):
    for folder in ("a", "b"):  # the same input, and the output it makes, in both folders
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "src.txt").write_text("x\n")
        (tmp_path / folder / "out.txt").write_text("x\n")

    def write(shell, cwd):
        (tmp_path / "jobs.yaml").write_text(
            f"jobs:\n  copy:\n    run: cp src.txt out.txt && echo copy >> ../ran.log\n    shell: {shell}\n"
            f"    cwd: {cwd}\n    inputs: [src.txt]\n    outputs: [out.txt]\n"
        )

    write("sh", "a")
    assert run_json(tmp_path)[1] == ["copy"]
    assert run_json(tmp_path)[1] == []
    write("bash", "a")
    assert explain(tmp_path) == {"copy": "command changed"}
    assert run_json(tmp_path)[1] == ["copy"]
    write("bash", "b")
    assert explain(tmp_path) == {"copy": "command changed"}
    assert run_json(tmp_path)[1] == ["copy"]
    assert run_json(tmp_path)[1] == []


def test_force_runs_jobs_that_are_up_to_date(build):
    run_json(build)
    assert run_json(build, "-B")[1] == ["copy", "count", "gen"]
    assert run_json(build, "--force", "count")[1] == ["count"]


def test_dry_run_marks_jobs_that_would_be_skipped(build):
    run_json(build)
    rewrite(build / "other.txt", "changed\n")
    (build / "ran.log").unlink()
    result = run_cli("run", "-n", "-f", build / "jobs.yaml", cwd=build)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["gen"] == lines["copy"] == "(up-to-date)"
    assert lines["count"].startswith("cat src.txt other.txt")
    assert not (build / "ran.log").exists()


def test_explain_names_the_first_reason(build, write_jobs):
    assert explain(build) == {"gen": "never ran", "count": "never ran", "copy": "needs gen (it would run)"}
    run_json(build)
    assert explain(build) == {"gen": "up to date", "count": "up to date", "copy": "up to date"}
    rewrite(build / "src.txt", "new\n")
    assert explain(build, "gen") == {"gen": "input src.txt changed"}
    jobfile = build / "jobs.yaml"
    jobfile.write_text(BUILD.replace("run: cat src.txt >", "run: false && cat src.txt >"))
    run_cli("run", "-f", jobfile, "gen", cwd=build)
    assert explain(build, "gen") == {"gen": "last run failed"}
    jobfile.write_text(BUILD + "  lint:\n    run: 'true'\n    inputs: [src.txt]\n")
    assert explain(build, "lint") == {"lint": "no outputs: always runs"}


def test_inputs_added_and_removed_through_a_glob(tmp_path):
    (tmp_path / "src" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "a.c").write_text("a")
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  pack:\n    run: cat src/*.c src/deep/*.c > pack.txt 2>/dev/null; echo pack >> ran.log\n"
        "    inputs: ['src/**/*.c']\n    outputs: [pack.txt]\n"
    )
    run_json(tmp_path)
    (tmp_path / "src" / "deep" / "b.c").write_text("b")
    assert explain(tmp_path) == {"pack": "input added: src/deep/b.c"}
    run_json(tmp_path)
    (tmp_path / "src" / "a.c").unlink()
    assert explain(tmp_path) == {"pack": "input removed: src/a.c"}
    assert run_json(tmp_path)[1] == ["pack"]


def test_needs_whose_outputs_changed_are_named(build):
    run_json(build)
    rewrite(build / "src.txt", "new\n")
    run_json(build, "gen", "--exclude", "copy")
    assert explain(build, "copy", "--exclude", "gen") == {"copy": "input gen.txt changed"}


def test_a_literal_output_that_is_an_input_becomes_a_need(tmp_path):
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        "  use:\n    run: cat made.txt > used.txt\n    inputs: [made.txt]\n    outputs: [used.txt]\n"
        "  make:\n    run: echo hi > made.txt\n    outputs: [./made.txt]\n"
    )
    result = run_cli("show", "-f", tmp_path / "jobs.yaml", "use")
    assert "needs:         make" in result.stdout
    assert "inputs:        made.txt" in result.stdout
    statuses, _ = run_json(tmp_path)
    assert statuses == {"make": "ok", "use": "ok"}
    assert (tmp_path / "used.txt").read_text() == "hi\n"


def test_a_cycle_through_inputs_is_reported_at_the_input(write_jobs):
    path = write_jobs(
        "jobs:\n"
        "  a:\n    run: x\n    inputs: [b.txt]\n    outputs: [a.txt]\n"
        "  b:\n    run: y\n    needs: [a]\n    outputs: [b.txt]\n"
    )
    result = run_cli("validate", path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:4:14: dependency cycle: a -> b -> a")
    assert 'its input "b.txt" is an output of it' in result.stderr


def test_duplicate_outputs_are_an_error_with_their_position(write_jobs):
    path = write_jobs(
        "jobs:\n  a:\n    run: x\n    outputs: [out/x.txt]\n"
        "  b:\n    run: y\n    outputs: [y, out/../out/x.txt]\n"
    )
    result = run_cli("validate", path)
    assert result.returncode == 2
    assert result.stderr == (
        f'{path}:7:18: output "out/../out/x.txt" of job "b" is also an output of job "a" (line 4); '
        "one job must make each file: remove one of them\n"
    )


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("    inputs: src.txt\n", "4:13", 'inputs of job "a" must be a list of paths or globs'),
        ("    outputs: [[x]]\n", "4:15", 'each item of outputs of job "a" must be a string'),
        ("    outputs: [x, x]\n", "4:18", '"x" is listed twice in outputs of job "a"'),
    ],
)
def test_inputs_and_outputs_are_checked_at_load(write_jobs, text, where, message):
    path = write_jobs("jobs:\n  a:\n    run: x\n" + text)
    result = run_cli("validate", path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:{where}: {message}")


def test_defaults_cannot_set_inputs_or_outputs(write_jobs):
    path = write_jobs("defaults:\n  outputs: [x]\njobs:\n  a: {run: x}\n")
    result = run_cli("validate", path)
    assert result.stderr == f'{path}:2:3: defaults cannot set "outputs": give each job its own outputs:\n'


def test_a_missing_literal_input_fails_the_job_without_starting_it(tmp_path):
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  a:\n    run: touch started\n    inputs: [absent.txt, 'globs/*.c']\n    outputs: [o]\n"
    )
    report = tmp_path / "r.json"
    result = run_cli("run", "-f", tmp_path / "jobs.yaml", "--report-file", report, cwd=tmp_path)
    assert result.returncode == 1
    [job] = json.loads(report.read_text())["jobs"]
    assert job["status"] == "failed" and job["reason"] == "input missing: absent.txt"
    assert not (tmp_path / "started").exists()


def test_an_input_changed_while_its_job_runs_makes_the_next_run_rerun_it(tmp_path):
    (tmp_path / "src.txt").write_text("before\n")
    # The job copies its input, then the input changes before the job ends.
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  copy:\n    run: cp src.txt out.txt && echo after > src.txt && echo copy >> ran.log\n"
        "    inputs: [src.txt]\n    outputs: [out.txt]\n"
    )
    assert run_json(tmp_path)[1] == ["copy"]
    assert explain(tmp_path) == {"copy": "input src.txt changed"}
    assert run_json(tmp_path)[1] == ["copy"]


def test_up_to_date_is_a_passed_junit_case(build):
    run_json(build)
    report = build / "r.xml"
    run_cli("run", "-f", build / "jobs.yaml", "--report-file", report, cwd=build)
    cases = ET.parse(report).getroot().iter("testcase")
    assert all(len(case) == 0 for case in cases)  # no failure, no skipped
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"


def test_two_concurrent_runs_build_each_job_once(tmp_path):
    (tmp_path / "src.txt").write_text("x\n")
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  slow:\n"
        f"    run: {child('sleep', 1)} && cp src.txt out.txt && echo slow >> ran.log\n"
        "    inputs: [src.txt]\n    outputs: [out.txt]\n"
    )
    command = [sys.executable, "-m", "orchestrator", "run", "-f", str(tmp_path / "jobs.yaml")]
    command += ["--report-file"]
    first = subprocess.Popen([*command, str(tmp_path / "1.json")], cwd=tmp_path)
    time.sleep(0.4)  # the first holds the job's lock by now (it sleeps a second)
    second = subprocess.Popen([*command, str(tmp_path / "2.json")], cwd=tmp_path)
    assert first.wait(60) == 0 and second.wait(60) == 0
    statuses = [json.loads((tmp_path / f"{n}.json").read_text())["jobs"][0]["status"] for n in (1, 2)]
    assert (tmp_path / "ran.log").read_text() == "slow\n"
    assert statuses[0] == "ok" and statuses[1] in ("ok (shared)", "up-to-date")
    # A run started after the first ended finds it up to date.
    assert run_json(tmp_path)[0] == {"slow": "up-to-date"}


def test_a_run_with_nothing_to_do_never_starts_the_engine(build):
    run_json(build)
    result = run_watching("gevent", build, env={"CI": "true"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "[1/3] up-to-date gen",
        "[2/3] up-to-date copy",
        "[3/3] up-to-date count",
        "no gevent",
    ]
    assert "3 up-to-date" in result.stdout
    history = run_cli("history", "-f", build / "jobs.yaml", cwd=build)
    assert history.stdout.count("3 up-to-date") == 1 and history.stdout.count("3 ok") == 1
    past = run_cli("report", "-f", build / "jobs.yaml", cwd=build)  # the latest run, rebuilt from state
    assert "3 up-to-date in" in past.stdout and past.stdout.count("up-to-date  ") == 3, past.stdout
    (build / "other.txt").write_text("changed\n")
    rerun = run_watching("gevent", build)
    assert rerun.returncode == 0 and rerun.stderr.splitlines()[-1] == "gevent"
    assert (build / "ran.log").read_text().split()[-1] == "count"
    assert run_watching("gevent", build).stderr.splitlines()[-1] == "no gevent"


def test_a_run_with_nothing_to_do_waits_for_a_run_remaking_one_of_its_jobs(tmp_path):
    (tmp_path / "src.txt").write_text("x\n")
    # Slow only once `hold` exists: long enough for the second run to start meanwhile.
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n  slow:\n"
        f"    run: (! test -e hold || {child('sleep', 1.5)}) && cp src.txt out.txt && echo slow >> ran.log\n"
        "    inputs: [src.txt]\n    outputs: [out.txt]\n"
    )
    assert run_json(tmp_path)[0] == {"slow": "ok"}
    (tmp_path / "hold").touch()
    command = [sys.executable, "-m", "orchestrator", "run", "-f", str(tmp_path / "jobs.yaml")]
    forced = subprocess.Popen([*command, "--force"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    wait_for(lambda: (tmp_path / ".orchestrate" / "state.db").exists() and _lock_held(tmp_path), 10)
    second = run_cli("run", "-f", tmp_path / "jobs.yaml", "--report-file", tmp_path / "2.json", cwd=tmp_path)
    assert forced.wait(60) == 0 and second.returncode == 0, second.stderr
    # Not "up-to-date" while the forced run was remaking it: it waited, and shares that run's result.
    assert json.loads((tmp_path / "2.json").read_text())["jobs"][0]["status"] == "ok (shared)"
    assert (tmp_path / "ran.log").read_text() == "slow\nslow\n"


def _lock_held(directory):
    """Whether some other process holds a job lock of jobs.yaml."""
    import fcntl

    path = directory / ".orchestrate" / "locks" / "jobs.yaml.lock"
    if not path.exists():
        return False
    with open(path, "r+b") as stream:
        try:
            fcntl.lockf(stream, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)
        except OSError:
            return True
        fcntl.lockf(stream, fcntl.LOCK_UN, 0, 0)
        return False


# -- the decision logic, with an in-memory store -------------------------------------------


def test_a_no_op_check_stats_files_and_reads_none(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        old = time.time() - 60  # not "racy": older than the moment it is hashed
        os.utime(tmp_path / name, (old, old))
    store = MemoryStore()
    hasher = Hasher(store)
    first = hasher.snapshot(str(tmp_path), ["a", "b", "*.none"])
    assert first.read == 2 and first.missing == ["*.none"]
    again = hasher.snapshot(str(tmp_path), ["a", "b"])
    assert again.read == 0 and again.hashes == first.hashes


def test_a_file_changed_just_now_is_not_cached(tmp_path):
    (tmp_path / "a").write_text("a")
    store = MemoryStore()
    Hasher(store).snapshot(str(tmp_path), ["a"])
    assert store.hashes == {}  # its mtime is too close to the read to trust it later


def test_first_reason_follows_the_specs_order(tmp_path):
    job = Job("j", "make", inputs=("i",), outputs=("o",), env={"A": "1"})
    store = MemoryStore()
    checker = Checker(store, Hasher(store), str(tmp_path))
    (tmp_path / "i").write_text("in")
    (tmp_path / "o").write_text("out")
    check = checker.check(job)
    assert check.reason == "never ran"
    checker.finished(job, check, succeeded=True)
    assert checker.check(job).reason is None
    (tmp_path / "o").unlink()
    (tmp_path / "i").write_text("changed")
    assert checker.check(job).reason == "output o missing"  # outputs come before inputs
    (tmp_path / "o").write_text("out")
    assert checker.check(job).reason == "input i changed"
    record = store.records["j"]
    inputs = Snapshot({"i": record.detail["inputs"]["i"]})
    outputs = Snapshot(dict(record.detail["outputs"]))
    other = Job("j", "make", inputs=("i",), outputs=("o",), env={"A": "2"})
    assert first_reason(other, record, inputs, outputs, {}) == "env A changed"
    assert first_reason(job, record, inputs, outputs, {"gen": "x"}) == "needs gen (its outputs changed)"
    checker.finished(job, check, succeeded=False)
    assert checker.check(job).reason == "last run failed"


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_the_c_build_example_is_incremental(tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "jobs", "examples", "build")
    shutil.copytree(example, tmp_path / "build", ignore=shutil.ignore_patterns("*.o", "app", ".orchestrate"))
    directory = tmp_path / "build"
    jobfile = directory / "build.yaml"
    report = directory / "r.json"

    def statuses():
        result = run_cli("run", "-f", jobfile, "--report-file", report, cwd=directory)
        assert result.returncode == 0, result.stdout + result.stderr
        return {job["name"]: job["status"] for job in json.loads(report.read_text())["jobs"]}

    assert set(statuses().values()) == {"ok"}
    assert statuses() == {name: "up-to-date" for name in ("main.o", "greet.o", "sum.o", "app")} | {
        "check": "ok"
    }
    rewrite(directory / "greet.c", (directory / "greet.c").read_text().replace("hello", "hi"))
    assert statuses() == {
        "main.o": "up-to-date",
        "sum.o": "up-to-date",
        "greet.o": "ok",
        "app": "ok",
        "check": "ok",
    }


# -- the no-op decision in this process, against a real run state ----------------------------


def _nothing_to_do(directory, **asked):
    from orchestrator.graph import select
    from orchestrator.loader import load
    from orchestrator.makeflags import parse_makeflags
    from orchestrator.noop import nothing_to_do
    from orchestrator.options import RunRequest

    jobfile = load(str(directory / "jobs.yaml"))
    names = select(jobfile.jobs, asked.pop("targets", []), [], [], [])
    request = RunRequest(file=str(directory / "jobs.yaml"), **asked)
    return nothing_to_do(jobfile, names, request, parse_makeflags(asked.get("makeflags", "")))


def test_the_no_op_decision_answers_only_when_every_job_is_up_to_date(build):
    assert _nothing_to_do(build) is None  # no state yet
    run_json(build)
    summary = _nothing_to_do(build, targets=["gen", "copy"])
    assert [(r.name, r.status.value) for r in summary.results] == [
        ("gen", "up-to-date"),
        ("copy", "up-to-date"),
    ]
    assert summary.exit_code == 0 and len(summary.run_id) == 12
    assert _nothing_to_do(build, force=True) is None and _nothing_to_do(build, resume=True) is None
    (build / "other.txt").write_text("changed\n")
    assert _nothing_to_do(build) is None  # count must run
    assert _nothing_to_do(build, targets=["copy"]) is not None  # copy and gen do not read it
    history = run_cli("history", "-f", build / "jobs.yaml", cwd=build).stdout
    # The two decisions that said yes are on record; the ones that said no left nothing.
    assert history.count("2 up-to-date") == 2 and len(history.splitlines()) == 2 + 3, history


def _nothing_to_do_elsewhere(build) -> bool:
    """Whether another process (locks are per process) finds nothing to do."""
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:0] = sys.argv[1:2]; import test_uptodate as t, pathlib; "
            "print(t._nothing_to_do(pathlib.Path(sys.argv[2])) is not None)",
            os.path.dirname(__file__),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip() in ("True", "False"), check.stderr
    return check.stdout.strip() == "True"


def test_the_no_op_decision_leaves_jobs_without_outputs_and_held_locks_to_the_engine(build, write_jobs):
    import fcntl

    from orchestrator.state import run_lock_offset

    run_json(build)
    lock = build / ".orchestrate" / "locks" / "jobs.yaml.lock"
    with open(lock, "r+b") as held:  # another run is alive, making no job of this file
        fcntl.lockf(held, fcntl.LOCK_EX, 1, run_lock_offset("another-run"))
        assert _nothing_to_do_elsewhere(build)
        fcntl.lockf(held, fcntl.LOCK_EX, 1, 12345)  # now it is making a job
        assert not _nothing_to_do_elsewhere(build)
    assert _nothing_to_do(build) is not None  # the lock is free again
    (build / "jobs.yaml").write_text(BUILD + "  plain:\n    run: echo plain\n")
    assert _nothing_to_do(build) is None  # a job without outputs always runs


def _cached_paths(directory) -> set[str]:
    import sqlite3

    with sqlite3.connect(directory / ".orchestrate" / "state.db") as connection:
        return {os.path.basename(path) for (path,) in connection.execute("SELECT path FROM file_hashes")}


def test_hashes_of_files_that_are_gone_are_forgotten_by_the_next_run_only(build):
    old = time.time() - 100  # hashes of files modified this instant are not kept (racy)
    for name in ("src.txt", "other.txt"):
        os.utime(build / name, (old, old))
    run_json(build)
    assert {"src.txt", "other.txt"} <= _cached_paths(build)
    (build / "other.txt").unlink()
    explain(build)  # looks, never writes
    assert "other.txt" in _cached_paths(build)
    result = run_cli("run", "-f", build / "jobs.yaml", cwd=build)
    assert result.returncode == 1 and "input missing: other.txt" in result.stdout, result.stdout
    assert "other.txt" not in _cached_paths(build) and "src.txt" in _cached_paths(build)


def test_a_run_looks_for_a_bounded_sample_of_the_cached_files(tmp_path, monkeypatch):
    from orchestrator import state

    store = state.StateStore(str(tmp_path), str(tmp_path / "jobs.yaml"), threaded=False)
    store.begin("r1", [], [], 1.0)
    (tmp_path / "kept").write_text("x")
    rows = [(str(tmp_path / f"gone{i}"), 1, 1, 1, "d") for i in range(10)]
    store.store_hashes([*rows, (str(tmp_path / "kept"), 1, 1, 1, "d")])
    monkeypatch.setattr(state, "HASH_CHECKS", 4)
    after = store.all_hashes(forget_missing=True)
    assert len(after) in (7, 8) and str(tmp_path / "kept") in after  # 4 looked for; kept may be one
    assert store.all_hashes() == after  # deleted from the database, not only from the answer
    monkeypatch.setattr(state, "HASH_CHECKS", 1000)
    assert list(store.all_hashes(forget_missing=True)) == [str(tmp_path / "kept")]
    store.close()
