"""The run state's database thread."""

import signal

from orchestrator.recorder import StateRecorder
from orchestrator.results import JobResult, Status
from orchestrator.state import StateStore


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


def test_only_the_last_runs_of_each_file_are_kept(tmp_path):
    from orchestrator.state import KEEP_RUNS

    for job_file in ("a.yaml", "b.yaml"):
        for number in range(KEEP_RUNS + 3 if job_file == "a.yaml" else 2):
            store = StateStore(str(tmp_path), str(tmp_path / job_file))
            store.begin(f"{job_file}-{number}", ["a"], [], float(number))
            recorder = StateRecorder(store, f"{job_file}-{number}", ["a"], {"a": "f"}, None)
            recorder.job_finished(JobResult("a", Status.OK, exit_code=0, start=1.0, end=2.0))
            recorder.close()
    store = StateStore(str(tmp_path), str(tmp_path / "a.yaml"))
    runs = store.runs(100)
    assert len(runs) == KEEP_RUNS and runs[-1].run_id == "a.yaml-3"
    assert all(run.counts == {"ok": 1} for run in runs)
    store.close()
    other = StateStore(str(tmp_path), str(tmp_path / "b.yaml"))
    assert len(other.runs(100)) == 2  # another file's runs are its own
    other.close()


def test_the_hash_cache_keeps_the_last_digest_of_each_path(tmp_path):
    store = StateStore(str(tmp_path), str(tmp_path / "jobs.yaml"))
    store.begin("r1", [], [], 1.0)
    store.store_hashes([("src/a.c", 10, 111, 5, "d1"), ("src/b.c", 20, 222, 6, "d2")])
    store.store_hashes([("src/b.c", 21, 223, 6, "d3")])  # b.c edited and hashed again
    assert store.all_hashes() == {"src/a.c": (10, 111, 5, "d1"), "src/b.c": (21, 223, 6, "d3")}
    store.close()


def test_a_recorded_run_reads_back_as_it_ended_whatever_rows_its_results_took(tmp_path):
    from orchestrator.results import Attempt, RunSummary
    from orchestrator.state import RecentDurations, result_statements

    results = [
        JobResult(
            "made",
            Status.OK,
            exit_code=0,
            attempts=1,
            start=10.0,
            end=12.5,
            tail="done\n",
            slot=0,
            tries=[Attempt(1, 10.0, 12.5, 0, None, False, 0, None)],
        ),
        JobResult("current", Status.UP_TO_DATE, ready=10.0),
        JobResult("after", Status.SKIPPED, reason="needs broken (failed)", ready=None),
        JobResult("gone", Status.FAILED, reason="input missing: a.txt", log_path="/logs/gone.log"),
    ]
    summary = RunSummary(results, elapsed=2.5, run_id="r1", started=10.0)
    names = [result.name for result in results]
    store = StateStore(str(tmp_path), str(tmp_path / "jobs.yaml"), threaded=False)
    statements = result_statements(
        store.job_file,
        "r1",
        {n: i for i, n in enumerate(names)},
        dict.fromkeys(names, "f"),
        results,
        {},
        RecentDurations({}),
    )
    store.record_finished_run(summary, names, ["run"], statements)
    _, back = store.summary("r1")
    store.close()
    assert back.results == results
    assert back.exit_code == summary.exit_code == 1 and back.elapsed == 2.5
