"""orchestrate as a make build step, with the real GNU make: shared job slots both ways."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import CHILD, OUTSIDE_VARIABLES, child, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "jobs", "make-example")
ORCH = f"{sys.executable} -m orchestrator"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def clean_env(**extra) -> dict:
    """The test process may itself run under `make test` (and in CI): nothing of that make,
    nor CI's own variables, may leak in."""
    env = {k: v for k, v in os.environ.items() if k not in (*OUTSIDE_VARIABLES, "MAKEOVERRIDES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_make(*args, cwd, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", *args, f"ORCHESTRATE={ORCH}"],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(path) -> list[tuple[str, str, float]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(kind, name, float(at)) for kind, name, at in (line.split() for line in f if line.strip())]


def most_at_once(path, only=None) -> int:
    """The most jobs between their start and end lines at one moment."""
    events = sorted((at, kind == "start") for kind, name, at in records(path) if only is None or only(name))
    now = peak = 0
    for _, starting in events:  # at equal times an end sorts before a start
        now += 1 if starting else -1
        peak = max(peak, now)
    return peak


def started(path) -> list[str]:
    return [name for kind, name, _ in records(path) if kind == "start"]


@pytest.fixture
def example(tmp_path):
    """A copy of jobs/make-example, so runs leave nothing in the repository."""
    return shutil.copytree(EXAMPLE, tmp_path / "example")


def test_make_j3_runs_a_twelve_job_step_in_its_three_slots(example, tmp_path):
    record = tmp_path / "record"
    result = run_make("-j3", "check", cwd=example, env=clean_env(RECORD=str(record)))
    assert result.returncode == 0, result.stderr
    assert len(started(record)) == 12
    assert 2 <= most_at_once(record) <= 3
    assert "jobserver" not in result.stderr and "warning" not in result.stderr


def test_two_steps_under_one_make_j4_share_its_four_slots(example, tmp_path):
    record = tmp_path / "record"
    result = run_make("-j4", cwd=example, env=clean_env(RECORD=str(record)))
    assert result.returncode == 0, result.stderr
    names = started(record)
    assert len(names) == 12
    assert 2 <= most_at_once(record) <= 4
    # Both steps were running together, not one after the other.
    assert most_at_once(record, only=lambda n: n.startswith("lint")) >= 1
    first_test = min(at for kind, name, at in records(record) if kind == "start" and name.startswith("test"))
    last_lint = max(at for kind, name, at in records(record) if kind == "end" and name.startswith("lint"))
    assert first_test < last_lint
    assert "jobserver" not in result.stderr and "warning" not in result.stderr


def test_a_failing_job_makes_make_fail(example, tmp_path):
    result = run_make("-j3", "check", cwd=example, env=clean_env(FAIL="test[SUITE=db]"))
    assert result.returncode != 0
    assert "[Makefile" in result.stderr and "check" in result.stderr  # make: *** [Makefile:N: check] Error 1
    assert "failed on purpose" in result.stdout
    assert "jobserver" not in result.stderr


def test_make_n_is_a_dry_run(example, tmp_path):
    record = tmp_path / "record"
    result = run_make("-n", "-j3", "check", cwd=example, env=clean_env(RECORD=str(record)))
    assert result.returncode == 0, result.stderr
    assert "test[SUITE=db]: ./work.sh" in result.stdout
    assert not record.exists()


def test_a_rule_not_marked_recursive_gets_one_warning_and_one_slot(example, tmp_path):
    (example / "Makefile").write_text("check:\n\t$(ORCHESTRATE) run jobs.yaml --tag lint\n")
    record = tmp_path / "record"
    result = run_make("-j3", "check", cwd=example, env=clean_env(RECORD=str(record), WORK_SECONDS="0.1"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "`+`" in warnings[0] and "$(MAKE)" in warnings[0]
    assert len(started(record)) == 4 and most_at_once(record) == 1


@pytest.fixture
def fifo_jobserver(tmp_path):
    """A jobserver made here: a fifo holding 2 tokens, as `make -j3` (4.4) would make it."""
    path = str(tmp_path / "jobserver")
    os.mkfifo(path)
    keep = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # keeps the tokens while nobody else has it open
    os.write(keep, b"ab")

    def tokens_back() -> bytes:
        try:
            return os.read(keep, 100)
        except BlockingIOError:
            return b""

    yield clean_env(MAKEFLAGS=f" -j3 --jobserver-auth=fifo:{path}"), tokens_back
    os.close(keep)


def write_recording_jobs(write_jobs, record, count, seconds, fail=None):
    lines = ["jobs:"]
    for i in range(count):
        command = child("record", record, "sleep", seconds) + ("; exit 1" if f"j{i}" == fail else "")
        lines += [f"  j{i}:", f"    run: {command!r}"]
    return write_jobs("\n".join(lines) + "\n")


def orchestrate(*args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("ending", ["success", "failure", "sigint"])
def test_fifo_jobserver_limits_the_run_and_gets_both_tokens_back(
    fifo_jobserver, write_jobs, tmp_path, ending
):
    env, tokens_back = fifo_jobserver
    record = tmp_path / "record"
    seconds = 30 if ending == "sigint" else 0.2
    jobs = write_recording_jobs(write_jobs, record, 8, seconds, fail="j5" if ending == "failure" else None)
    process = orchestrate(jobs, "-k", env=env)
    if ending == "sigint":
        deadline = time.monotonic() + 20
        while len(started(record)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(started(record)) == 3
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == {"success": 0, "failure": 1, "sigint": 130}[ending], out + err
    assert sorted(tokens_back()) == sorted(b"ab")
    assert len(started(record)) == (3 if ending == "sigint" else 8)
    assert (2 if ending == "success" else 1) <= most_at_once(record) <= 3
    assert "warning" not in err


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_make_inside_a_job_shares_orchestrates_limit(write_jobs, tmp_path, processes):
    record = tmp_path / "record"
    targets = " ".join(f"t{i}" for i in range(10))
    (tmp_path / "sub.mk").write_text(
        textwrap.dedent(f"""\
        all: {targets}
        {targets}:
        \t@ORCHESTRATE_JOB=$@ {sys.executable} {CHILD} record {record} sleep 0.3
    """)
    )
    others = "".join(f"  other{i}:\n    run: {child('record', record, 'sleep', 0.4)!r}\n" for i in range(4))
    jobs = write_jobs(f"jobs:\n  build:\n    run: make -s -f sub.mk\n    cwd: .\n{others}")
    result = run_cli("run", jobs, "-j", "4", "--processes", processes, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(started(record)) == 14
    assert most_at_once(record) <= 4
    assert most_at_once(record, only=lambda name: name.startswith("t")) >= 2  # the sub-make ran in parallel
    assert "warning" not in result.stdout + result.stderr


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_make_inside_a_job_under_make_shares_makes_slots(tmp_path, write_jobs, processes):
    """make -j3 -> orchestrate (a client) -> a job running make: one pool of 3 slots."""
    record = tmp_path / "record"
    targets = " ".join(f"t{i}" for i in range(6))
    (tmp_path / "sub.mk").write_text(
        f"all: {targets}\n{targets}:\n"
        f"\t@ORCHESTRATE_JOB=$@ {sys.executable} {CHILD} record {record} sleep 0.3\n"
    )
    others = "".join(f"  other{i}:\n    run: {child('record', record, 'sleep', 0.3)!r}\n" for i in range(2))
    write_jobs(f"jobs:\n  build:\n    run: $MAKE -s -f sub.mk\n{others}")
    (tmp_path / "Makefile").write_text(
        f"step:\n\t+@MAKE=$(MAKE) $(ORCHESTRATE) run jobs.yaml -q --processes {processes}\n"
    )
    result = run_make("-j3", "-s", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(started(record)) == 8
    assert 2 <= most_at_once(record) <= 3
    assert most_at_once(record, only=lambda name: name.startswith("t")) >= 2  # the sub-make ran in parallel
    assert "warning" not in result.stdout + result.stderr


def test_orchestrate_inside_orchestrate_shares_the_outer_limit(tmp_path, write_jobs):
    record = tmp_path / "record"
    inner = write_jobs(
        "jobs:\n"
        + "".join(f"  inner{i}:\n    run: {child('record', record, 'sleep', 0.3)!r}\n" for i in range(6)),
        name="inner.yaml",
    )
    outer = write_jobs(f"""jobs:
  nested:
    run: {ORCH} run {inner} -q
  solo:
    run: {child("record", record, "sleep", 0.3)!r}
""")
    result = run_cli("run", outer, "-j", "3", env={"PYTHONPATH": REPO})
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(started(record)) == 7
    assert 2 <= most_at_once(record) <= 3
