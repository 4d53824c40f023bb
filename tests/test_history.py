"""The run state's database thread."""

import signal

from orchestrator.results import JobResult, Status
from orchestrator.state import StateRecorder, StateStore


def test_the_state_thread_leaves_sigchld_to_the_hub(tmp_path):
    # A SIGCHLD taken by another thread costs the hub a cross-thread wake-up per job.
    store = StateStore(str(tmp_path), str(tmp_path / "jobs.yaml"))
    masks = []
    connect = store._connect
    store._connect = lambda: (masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])), connect())[1]
    store.begin("r1", ["a"], [], 1.0)
    recorder = StateRecorder(store, "r1", ["a"], {"a": "f"}, None)
    recorder.job_finished(JobResult("a", Status.OK, exit_code=0, start=1.0, end=2.0))
    recorder.close()
    assert masks and signal.SIGCHLD in masks[0]  # the connection was made in the pool's thread
    assert signal.SIGCHLD not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the hub's is untouched
    reread = StateStore(str(tmp_path), str(tmp_path / "jobs.yaml"))
    assert reread.read()["a"].status == "ok"
    assert reread.expected_durations() == {"a": 1.0}
    reread.close()
