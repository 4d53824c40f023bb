"""The run's history file and the thread that syncs it."""

import json
import signal

from orchestrator.results import JobResult, Status
from orchestrator.state import History


def test_the_sync_thread_leaves_sigchld_to_the_hub(tmp_path):
    # A SIGCHLD taken by another thread costs the hub a cross-thread wake-up per job.
    history = History(str(tmp_path / "h.jsonl"), {"event": "run", "run_id": "r1", "jobs": {}})
    masks = []
    sync = history.writer.sync
    history.writer.sync = lambda: (masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])), sync())
    history.job_finished(JobResult("a", Status.OK, exit_code=0))
    history.close()
    assert masks and signal.SIGCHLD in masks[0]  # the first sync ran in the pool's thread
    assert signal.SIGCHLD not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the hub's is untouched


def test_each_run_starts_the_file_afresh(tmp_path):
    path = str(tmp_path / "h.jsonl")
    for run_id in ("r1", "r2"):
        history = History(path, {"event": "run", "run_id": run_id, "jobs": {}})
        history.job_finished(JobResult("a", Status.OK, exit_code=0))
        history.close()
    with open(path) as lines:
        records = [json.loads(line) for line in lines]
    assert [(r["event"], r["run_id"]) for r in records] == [("run", "r2"), ("job", "r2")]
