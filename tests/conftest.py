"""Shared test helpers: the controllable child and running the real CLI."""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest
from golden import UPDATE_OPTION, GoldenFiles

TESTS = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(TESTS, "child.py")


# What the machine running the tests may set and the tests must not inherit: a make around
# `make test` (its jobserver), and CI's own variables (CI=true turns on progress lines,
# GITHUB_ACTIONS log groups). A test that wants one sets it itself.
OUTSIDE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CI", "GITHUB_ACTIONS")


def alive(pid: int) -> bool:
    """Running, not a zombie and not gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    found[int(entry)] = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return found


def child(*actions) -> str:
    """A shell command string running tests/child.py with these actions."""
    return " ".join(shlex.quote(str(a)) for a in (sys.executable, CHILD, *actions))


def child_argv(*actions) -> list[str]:
    return [sys.executable, CHILD, *map(str, actions)]


def run_cli(*args, cwd=None, env=None, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """The real command line in a fresh interpreter, as a user runs it."""
    full_env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARIABLES}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


# Runs the CLI in this interpreter, then says on stderr whether a module was ever imported.
_WATCH_IMPORT = (
    "import sys; from orchestrator.cli import main; code = main(sys.argv[2:]); name = sys.argv[1]; "
    "print(name if name in sys.modules else 'no ' + name, file=sys.stderr); sys.exit(code)"
)


def run_watching(module, directory, *args, env=None) -> subprocess.CompletedProcess:
    """`orchestrate run -f DIRECTORY/jobs.yaml ARGS` in one interpreter; the last line of its
    stderr is `MODULE` if it imported that module, else `no MODULE`."""
    full_env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARIABLES}
    full_env.update(env or {})
    command = [sys.executable, "-c", _WATCH_IMPORT, module, "run", "-f", str(directory / "jobs.yaml"), *args]
    return subprocess.run(command, cwd=directory, env=full_env, capture_output=True, text=True, timeout=60)


def run_json(directory, *args):
    """Run jobs.yaml in `directory` through the CLI; each job's status (from the JSON report)
    and the names that ran, sorted (jobs that append their name to ran.log)."""
    log = directory / "ran.log"
    log.unlink(missing_ok=True)
    report = directory / "report.json"
    result = run_cli("run", "-f", directory / "jobs.yaml", "--report-file", report, *args, cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {job["name"]: job["status"] for job in json.loads(report.read_text())["jobs"]}
    ran = log.read_text().split() if log.exists() else []
    return statuses, sorted(ran)


def start_cli(*args, text=True, **kwargs) -> subprocess.Popen:
    """The real command line started in the background, its stdout and stderr piped: a test
    that does not read them plays a reader that stopped reading."""
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARIABLES}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        env=env,
        **kwargs,
    )


def wait_for(predicate, seconds=20.0) -> bool:
    """Poll `predicate` until it holds (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def _fresh_hub_clock():
    """libev counts a timer from the time of its loop's last turn. A hub made in this process
    but not yet turning (a gevent object made by an earlier test, then only CLI runs in
    subprocesses for seconds) would fire a test's `timeout=5` at once, as it did under
    pytest-xdist, where tests run in another order."""
    import gevent

    gevent.get_hub().loop.update_now()


@pytest.fixture
def write_jobs(tmp_path):
    """Write a job file into tmp_path and return its path."""

    def write(text: str, name: str = "jobs.yaml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        UPDATE_OPTION,
        action="store_true",
        help="rewrite the golden files from this run instead of comparing (`make golden`)",
    )


@pytest.fixture(scope="session")
def golden(request: pytest.FixtureRequest) -> GoldenFiles:
    """Compare output to a golden file, or rewrite it under --update-golden."""
    return GoldenFiles(request.config.getoption(UPDATE_OPTION))
