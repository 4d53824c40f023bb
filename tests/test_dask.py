"""--executor dask: a real scheduler and two workers on 127.0.0.1, driven through the CLI."""

import json
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import test_scenarios
from conftest import alive, child, child_argv, run_cli
from golden import GoldenFiles, normalise_json, normalise_stdout
from test_reliability import start_cli, wait_for

pytest.importorskip("distributed")

# Under pytest-xdist (`make test`), one worker runs this module: one cluster, not one a worker.
pytestmark = pytest.mark.xdist_group("dask")

SCHEDULER = [sys.executable, "-m", "dask", "scheduler"]
WORKER = [sys.executable, "-m", "dask", "worker"]
WORKER_THREADS = 4
# A worker or scheduler that has not exited this long after SIGTERM is stuck at its exit
# (it stops in well under a second): SIGKILL. 10 s here once cost the suite 10 s a run.
STOP_SECONDS = 3


class Cluster:
    """`dask scheduler` and `dask worker` processes, each in a session of its own, stopped by pid."""

    def __init__(self, folder):
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self._start(
            [*SCHEDULER, "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
            "scheduler",
            "--scheduler-file",
        )
        if not wait_for(self._read_address, 30):
            self.stop()
            pytest.fail(f"the scheduler did not start:\n{self.log('scheduler')}")
        self.target = "dask://" + self.address.removeprefix("tcp://")

    def _read_address(self) -> bool:
        try:  # the scheduler may be halfway through writing it
            self.address = json.loads(self.scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            return False
        return True

    def _start(self, argv, name, *more) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [*argv, *more, self.scheduler_file],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def log(self, name) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def start_worker(self, *options) -> subprocess.Popen:
        index = len(self.workers)
        argv = [*WORKER, "--host", "127.0.0.1", "--nthreads", WORKER_THREADS, "--no-nanny"]
        worker = self._start(
            [*map(str, argv), "--no-dashboard", *options], f"worker{index}", "--scheduler-file"
        )
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(count, timeout=60)

    def stop(self) -> None:
        """The workers first, while their scheduler can still see them off, then the scheduler."""
        for group in (self.processes[1:], self.processes[:1]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_SECONDS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        running.start_worker("--resources", "gpu=1")  # the only host offering a gpu
        running.start_worker()
        running.wait_for_workers(2)
        yield running
    finally:
        running.stop()


def report_of(path) -> dict:
    return {job["name"]: job for job in json.loads(path.read_text())["jobs"]}


SUMMARY_LINE = re.compile(r"^(?:\d+ [a-z() -]+, )*\d+ [a-z() -]+ in \S+$")


def without_host_column(stdout: str) -> str:
    """The results table as a local run prints it: the host column (this machine, for every
    job that ran) checked and cut out of the header, the dashes and each row."""
    lines = stdout.split("\n")
    header_at = next(
        (i for i, line in enumerate(lines) if line.startswith("job ") and " host " in line), None
    )
    if header_at is None:
        return stdout
    header = lines[header_at]
    start, end = header.index("host"), header.index("last output")
    for i in range(header_at, len(lines)):
        line = lines[i]
        if SUMMARY_LINE.match(line):
            break  # past the rows
        assert i <= header_at + 1 or line[start:end].strip() in ("", socket.gethostname()), line
        lines[i] = (line[:start] + line[end:]).rstrip()  # tabulate pads no last cell
    return "\n".join(lines)


# Scenarios whose difference from the others is decided in orchestrate's own process: the
# parent's decisions (test_scenarios.DECIDED_IN_THE_PARENT: selection, what the engine does
# after an exit code, matrix expansion) and what its reporter prints (output-failed,
# quiet-success). On Dask they would repeat what the other scenarios already send through
# it: commands that exit with a code (cwd-and-shell: 127s; failure-stops-new-work: 3; retry:
# 1), print (output-stream, argv-and-env) and see their environment (argv-and-env,
# matrix-no-injection), run at once (resources), and are stopped (fail-fast, job-timeout,
# run-timeout). Each still runs locally (test_scenarios).
DECIDED_IN_ORCHESTRATE = test_scenarios.DECIDED_IN_THE_PARENT | {"output-failed", "quiet-success"}


# Every other scenario folder, with the same expectations and golden files as locally: the
# scenarios' own test with `--executor` added to its command line (so it stays the one reader
# of expect.yaml and golden/). The report names the host a job ran on, here this machine:
# checked, then compared as a local run's (null). Golden files are only compared, never
# rewritten from here. Three at a time: each run mostly waits (for Dask's import, the
# scheduler, its jobs' sleeps).
@pytest.mark.slow
def test_every_scenario_runs_on_dask_as_locally(cluster, tmp_path, monkeypatch):
    def run_on_dask(*args, **kwargs):
        return run_cli(*args, "--executor", cluster.target, **kwargs)

    def hosts_checked(text, folder):
        report = json.loads(text)
        for job in report["jobs"]:
            for record in [job, *job.get("tries", [])]:
                assert record.get("host") in (None, socket.gethostname()), record
                record["host"] = None  # as when the job runs on this machine without Dask
        return normalise_json(json.dumps(report), folder)

    monkeypatch.setattr(test_scenarios, "run_cli", run_on_dask)

    def host_column_checked(text, folder, run_id=None):
        return normalise_stdout(without_host_column(text), folder, run_id)

    monkeypatch.setattr(test_scenarios, "normalise_json", hosts_checked)
    monkeypatch.setattr(test_scenarios, "normalise_stdout", host_column_checked)
    compare_only = GoldenFiles(False)

    def check(name: str) -> str:
        folder = tmp_path / name
        folder.mkdir()
        try:
            test_scenarios.test_scenario(name, "1", folder, compare_only)
        except (AssertionError, pytest.fail.Exception) as failure:
            return f"{name}: {failure}"
        return ""

    with ThreadPoolExecutor(3) as pool:
        names = [name for name in test_scenarios.scenario_names() if name not in DECIDED_IN_ORCHESTRATE]
        assert len(names) == len(test_scenarios.scenario_names()) - len(DECIDED_IN_ORCHESTRATE)
        failures = [failure for failure in pool.map(check, names) if failure]
    assert not failures, "\n\n".join(failures)


def test_output_is_streamed_while_the_job_runs(cluster, tmp_path, write_jobs):
    marker = tmp_path / "go"
    command = child("print", "first", "sleep", 0.2, "print", "waiting")
    command += f"; while [ ! -e {marker} ]; do sleep 0.05; done; echo last"
    jobs = write_jobs(f"jobs:\n  talk: {{run: {json.dumps(command)}}}\n")
    process = start_cli("run", jobs, "--executor", cluster.target, "--output", "stream")
    lines = []
    for line in process.stdout:  # the job cannot end before we have read its first lines
        lines.append(line)
        if "waiting" in line:
            marker.touch()
    assert process.wait(30) == 0, process.stderr.read()
    assert lines[:3] == ["[talk] first\n", "[talk] waiting\n", "[talk] last\n"], lines
    log = tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "talk.log"
    assert log.read_text() == "first\nwaiting\nlast\n"


def test_environment_is_the_workers_then_the_files_then_named_variables(cluster, tmp_path, write_jobs):
    command = child("env", "FROM_FILE", "env", "SECRET", "env", "SHARED", "env", "ORCHESTRATE_JOB")
    jobs = write_jobs(f"env: {{FROM_FILE: file}}\njobs:\n  show: {{run: {json.dumps(command)}}}\n")
    result = run_cli(
        "run", jobs, "--executor", cluster.target, "--env", "SHARED", env={"SECRET": "s3", "SHARED": "yes"}
    )
    assert result.returncode == 0, result.stderr
    assert "FROM_FILE=file\nSECRET=\nSHARED=yes\nORCHESTRATE_JOB=show\n" in result.stdout


def test_host_resources_cap_what_runs_at_once_on_a_host(cluster, tmp_path, write_jobs):
    record = tmp_path / "record"
    command = json.dumps(child("record", record, "sleep", 0.4))
    jobs = write_jobs(
        "jobs:\n"
        + "".join(f"  gpu{i}: {{run: {command}, host_resources: {{gpu: 1}}}}\n" for i in range(3))
        + "".join(f"  free{i}: {{run: {command}}}\n" for i in range(3))
    )
    result = run_cli("run", jobs, "--executor", cluster.target, "-j", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    spans = {}
    for line in record.read_text().splitlines():
        event, name, at = line.split()
        spans.setdefault(name, {})[event] = float(at)

    def most_at_once(names):
        edges = sorted((spans[n][e], 1 if e == "start" else -1) for n in names for e in ("start", "end"))
        running = peak = 0
        for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
            running += step
            peak = max(peak, running)
        return peak

    assert most_at_once([f"gpu{i}" for i in range(3)]) == 1, spans
    assert most_at_once([f"free{i}" for i in range(3)]) > 1, spans  # the same jobs uncapped overlap


def test_a_job_no_worker_can_host_fails_with_a_reason(cluster, tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  big: {run: echo never, host_resources: {gpu: 2}}\n")
    report = tmp_path / "report.json"
    result = run_cli("run", jobs, "--executor", cluster.target, "--report-file", report)
    assert result.returncode == 1
    assert "no Dask worker offers host_resources gpu=2" in report_of(report)["big"]["reason"]


def test_host_resources_are_read_from_jobs_and_defaults(write_jobs):
    from orchestrator.loader import load_for_process

    jobs = write_jobs("""defaults: {host_resources: {gpu: 1}}
jobs:
  train: {run: echo train, host_resources: {gpu: 2, ssd: 1}}
  infer: {run: echo infer}
""")
    loaded = load_for_process(jobs).jobs
    assert dict(loaded["train"].host_resources) == {"gpu": 2, "ssd": 1}
    assert dict(loaded["infer"].host_resources) == {"gpu": 1}


@pytest.mark.parametrize(
    "value, message",
    [
        ("[gpu]", 'host_resources of job "a" must be a mapping of name to units, e.g. {gpu: 1}, got a list'),
        ("{gpu: 0}", 'units of "gpu" in host_resources of job "a" must be a whole number >= 1'),
    ],
)
def test_bad_host_resources_are_a_usage_error(write_jobs, value, message):
    jobs = write_jobs(f"jobs:\n  a: {{run: echo a, host_resources: {value}}}\n")
    result = run_cli("validate", jobs)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{jobs}:2:") and message in result.stderr, result.stderr


def test_sigint_leaves_no_remote_process(cluster, tmp_path, write_jobs):
    pids = [tmp_path / "calm.pid", tmp_path / "stubborn.pid"]
    jobs = write_jobs(f"""jobs:
  calm: {{run: {json.dumps(child("pidfile", pids[0], "sleep", 60))}}}
  stubborn: {{run: {json.dumps(child("ignore-term", "pidfile", pids[1], "sleep", 60))}}}
""")
    process = start_cli("run", jobs, "--executor", cluster.target, "-j", "2", "--kill-grace", "1s")
    assert wait_for(lambda: all(p.exists() and p.read_text() for p in pids), 30)
    remote = [int(p.read_text()) for p in pids]
    assert all(alive(pid) for pid in remote)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    assert wait_for(lambda: not any(alive(pid) for pid in remote), 10), remote


def test_dask_local_runs_on_its_own_workers(tmp_path, write_jobs):
    jobs = write_jobs(f"""jobs:
  a: {{run: {json.dumps(child("print", "a"))}}}
  b: {{run: {json.dumps(child("print", "b"))}, needs: [a]}}
  c: {{run: {json.dumps(child("print", "c"))}, needs: [a]}}
""")
    report = tmp_path / "report.json"
    result = run_cli("run", jobs, "--executor", "dask-local:2", "--report-file", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {name: job["status"] for name, job in report_of(report).items()} == dict.fromkeys("abc", "ok")
    assert "Traceback" not in result.stderr


def test_an_unreachable_scheduler_is_a_usage_error(tmp_path, write_jobs):
    jobs = write_jobs("jobs:\n  a: {run: echo never}\n")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    started = time.monotonic()
    result = run_cli("run", jobs, "--executor", f"dask://127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"orchestrate: error: cannot reach the Dask scheduler at dask://127.0.0.1:{port}"
    )
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


def test_without_distributed_the_dask_executor_is_a_usage_error(tmp_path, write_jobs):
    blocker = tmp_path / "blocked" / "distributed"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    jobs = write_jobs("jobs:\n  a: {run: echo never}\n")
    result = run_cli("run", jobs, "--executor", "dask-local:1", env={"PYTHONPATH": str(blocker.parent)})
    assert result.returncode == 2
    assert "pip install 'orchestrate[dask]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_executor_reports_the_host_and_streams_output(cluster):
    import gevent
    from gevent.event import Event

    from orchestrator.executors.dask import DaskExecutor
    from orchestrator.model import Job

    executor = DaskExecutor(cluster.target, kill_grace=1.0, run_id="unit")
    try:
        chunks = []
        job = Job("hello", tuple(child_argv("print", "hi", "exit", 3)))
        runner = gevent.spawn(executor.run_attempt, job, 1, {}, None, Event(), chunks.append)
        result = runner.get(timeout=30)
    finally:
        executor.close()
    assert (result.exit_code, result.host) == (3, socket.gethostname())
    assert b"".join(chunks) == b"hi\n"


@pytest.mark.slow
def test_a_scheduler_that_goes_away_fails_the_run_and_its_jobs_die(tmp_path_factory, tmp_path, write_jobs):
    doomed = Cluster(tmp_path_factory.mktemp("doomed"))
    try:
        doomed.start_worker()
        doomed.wait_for_workers(1)
        pidfile = tmp_path / "job.pid"
        jobs = write_jobs(f"jobs:\n  long: {{run: {json.dumps(child('pidfile', pidfile, 'sleep', 60))}}}\n")
        report = tmp_path / "report.json"
        process = start_cli("run", jobs, "--executor", doomed.target, "--report-file", report)
        assert wait_for(lambda: pidfile.exists() and pidfile.read_text(), 30)
        doomed.processes[0].kill()  # the scheduler
        out, err = process.communicate(timeout=60)
    finally:
        doomed.stop()
    assert process.returncode == 1, out + err
    assert "Traceback" not in err, err
    assert report_of(report)["long"]["reason"] == f"lost the Dask scheduler at {doomed.address}"
    assert wait_for(lambda: not alive(int(pidfile.read_text())), 10)  # its worker killed it


# Last: it kills one of the module's workers (and starts another in its place).
@pytest.mark.slow
def test_a_worker_that_dies_fails_its_attempt_and_retries_apply(cluster, tmp_path, write_jobs):
    pidfile = tmp_path / "victim.pid"
    first = child("pidfile", pidfile, "sleep", 60)
    command = f'if [ "$ORCHESTRATE_ATTEMPT" = 1 ]; then exec {first}; fi; echo second attempt ok'
    jobs = write_jobs(f"jobs:\n  victim: {{run: {json.dumps(command)}, retries: 1}}\n")
    report = tmp_path / "report.json"
    process = start_cli("run", jobs, "--executor", cluster.target, "--report-file", report)
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text(), 30)
    job_pid = int(pidfile.read_text())
    worker = next(w for w in cluster.workers if w.pid == _parent_of(job_pid))
    worker.kill()  # SIGKILL: no goodbye to the scheduler, as a crashed host
    out, err = process.communicate(timeout=60)
    cluster.start_worker()
    assert process.returncode == 0, out + err
    assert "Traceback" not in err
    victim = report_of(report)["victim"]
    assert (victim["status"], victim["attempts"]) == ("ok", 2)
    log = (tmp_path / ".orchestrate" / "logs" / "jobs.yaml" / "victim.log").read_text()
    assert "--- worker tcp://127.0.0.1:" in log and " died ---\n--- attempt 2 ---\nsecond attempt ok\n" in log
    assert wait_for(lambda: not alive(job_pid), 10)  # the worker's death took its job along
    cluster.wait_for_workers(2)


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[1])
