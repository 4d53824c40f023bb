"""--processes N: worker processes that die, and a parent that dies, leave nothing behind."""

import json
import signal
import subprocess
import time

from conftest import alive, child, parents
from test_reliability import ORCH, start_cli, wait_for


def test_a_dying_worker_fails_its_jobs_with_a_reason_and_the_run_goes_on(tmp_path, write_jobs):
    # A job's parent is the worker that launched it: this job kills its worker.
    jobs = write_jobs("""jobs:
  assassin: {run: "sleep 0.3; kill -9 $PPID; sleep 30"}
  calm-1: {run: sleep 1}
  calm-2: {run: sleep 1}
  later: {run: echo later, needs: [calm-1]}
""")
    report = tmp_path / "report.json"
    started = time.monotonic()
    result = subprocess.run(
        [*ORCH, "run", jobs, "--processes", "2", "-k", "--report-file", report, "--kill-grace", "1s"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Noticed when the worker dies, not when the orphaned `sleep 30` ends.
    assert time.monotonic() - started < 20
    assert result.returncode == 1, result.stdout + result.stderr
    got = {job["name"]: job for job in json.loads(report.read_text())["jobs"]}
    assert got["assassin"]["status"] == "failed"
    assert "worker process" in got["assassin"]["reason"] and "died" in got["assassin"]["reason"]
    assert all(got[name]["status"] == "ok" for name in ("calm-1", "calm-2", "later")), got


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for process, parent in parents().items():
        children.setdefault(parent, []).append(process)
    found, stack = [], [pid]
    while stack:
        for kid in children.get(stack.pop(), []):
            found.append(kid)
            stack.append(kid)
    return found


def test_killing_the_parent_leaves_no_worker_and_no_job(tmp_path, write_jobs):
    pids = [tmp_path / f"job{i}.pid" for i in range(3)]
    jobs = write_jobs(
        "jobs:\n"
        + "".join(
            f"  j{i}: {{run: {json.dumps(child('ignore-term', 'pidfile', pid, 'sleep', 120))}}}\n"
            for i, pid in enumerate(pids)
        )
    )
    process = start_cli("run", jobs, "--processes", "2", "-j", "3", "--kill-grace", "1s")
    assert wait_for(lambda: all(p.exists() for p in pids), 30)
    workers = _descendants(process.pid)
    job_pids = [int(p.read_text()) for p in pids]
    assert set(job_pids) <= set(workers)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 15), [p for p in workers if alive(p)]
