"""The scheduler with a fake executor: limits, gates, policies, skips, stops."""

import signal
import time

import gevent
import pytest
from fakes import FakeExecutor, jobs_of, make_engine

from orchestrator.listeners import RunListener
from orchestrator.model import Job
from orchestrator.process import ProcessResult
from orchestrator.results import Status, StopReason


def job(name, needs=(), **kwargs):
    return Job(name=name, run="true", needs=tuple(needs), **kwargs)


def statuses(summary):
    return {r.name: r.status for r in summary.results}


def test_most_running_never_exceeds_jobs_limit():
    jobs = jobs_of(*(job(f"j{i}") for i in range(40)))
    executor = FakeExecutor(default_duration=0.01)
    summary = make_engine(jobs, executor, jobs_limit=3).run()
    assert executor.peak == 3
    assert summary.exit_code == 0
    assert len(executor.started) == 40


def test_resource_capacity_is_never_exceeded_and_weighted():
    jobs = jobs_of(*(job(f"j{i}", resources={"db": 1 + i % 2}) for i in range(20)))
    executor = FakeExecutor(default_duration=0.01)
    make_engine(jobs, executor, jobs_limit=8, capacities={"db": 3}).run()
    assert 2 <= executor.resource_peak["db"] <= 3


def test_three_jobs_each_needing_two_of_three_units_all_finish():
    jobs = jobs_of(*(job(f"j{i}", resources={"r": 2}) for i in range(3)))
    executor = FakeExecutor(default_duration=0.02)
    summary = make_engine(jobs, executor, jobs_limit=3, capacities={"r": 3}).run()
    assert all(r.status == Status.OK for r in summary.results)
    assert executor.resource_peak["r"] == 2


def test_needs_run_first_in_dependency_order():
    jobs = jobs_of(job("c", needs=["b"]), job("b", needs=["a"]), job("a"))
    executor = FakeExecutor()
    make_engine(jobs, executor).run()
    assert executor.started == ["a", "b", "c"]


def test_failure_skips_dependents_and_default_policy_starts_nothing_new():
    jobs = jobs_of(job("bad"), job("slow"), job("after_bad", needs=["bad"]), job("later", needs=["slow"]))
    executor = FakeExecutor(durations={"slow": 0.2, "bad": 0.01}, codes={"bad": 1})
    summary = make_engine(jobs, executor, jobs_limit=2).run()
    assert statuses(summary) == {
        "bad": Status.FAILED,
        "slow": Status.OK,
        "after_bad": Status.SKIPPED,
        "later": Status.CANCELLED,
    }
    assert summary.exit_code == 1


def test_keep_going_runs_everything_not_depending_on_the_failure():
    jobs = jobs_of(job("bad"), job("slow"), job("after_bad", needs=["bad"]), job("later", needs=["slow"]))
    executor = FakeExecutor(durations={"slow": 0.2}, codes={"bad": 1})
    summary = make_engine(jobs, executor, jobs_limit=2, policy="keep-going").run()
    assert statuses(summary) == {
        "bad": Status.FAILED,
        "slow": Status.OK,
        "after_bad": Status.SKIPPED,
        "later": Status.OK,
    }


def test_fail_fast_interrupts_running_jobs_and_cancels_the_rest():
    jobs = jobs_of(job("bad"), job("slow"), job("queued"), job("after", needs=["slow"]))
    executor = FakeExecutor(durations={"slow": 30, "bad": 0.05, "queued": 30}, codes={"bad": 2})
    summary = make_engine(jobs, executor, jobs_limit=2, policy="fail-fast").run()
    # -j 2: bad and slow run, queued waits for a slot; after needs slow, interrupted.
    assert statuses(summary) == {
        "bad": Status.FAILED,
        "slow": Status.INTERRUPTED,
        "queued": Status.CANCELLED,
        "after": Status.SKIPPED,
    }
    assert sorted(executor.started) == ["bad", "slow"]  # slow first: a job needs it (critical path)
    assert summary.exit_code == 1


def test_allowed_failure_does_not_fail_or_skip():
    jobs = jobs_of(job("flaky", allow_failure=True), job("next", needs=["flaky"]))
    summary = make_engine(jobs, FakeExecutor(codes={"flaky": 1})).run()
    assert statuses(summary) == {"flaky": Status.ALLOWED, "next": Status.OK}
    assert summary.exit_code == 0


def test_retries_until_success_with_attempt_numbers():
    jobs = jobs_of(job("flaky", retries=3))
    executor = FakeExecutor(codes={"flaky": [1, 1, 0]})
    summary = make_engine(jobs, executor).run()
    assert executor.attempts == [("flaky", 1), ("flaky", 2), ("flaky", 3)]
    assert summary.results[0].status == Status.OK and summary.results[0].attempts == 3


def test_retries_exhausted_fails():
    jobs = jobs_of(job("bad", retries=1, retry_delay=0.01))
    summary = make_engine(jobs, FakeExecutor(codes={"bad": 1})).run()
    assert summary.results[0].status == Status.FAILED and summary.results[0].attempts == 2


def test_run_timeout_interrupts_and_cancels_with_exit_124():
    jobs = jobs_of(job("long"), job("after", needs=["long"]), job("waiting"))
    executor = FakeExecutor(durations={"long": 30, "waiting": 30})
    summary = make_engine(jobs, executor, jobs_limit=1, timeout=0.1).run()
    got = statuses(summary)
    assert got == {"long": Status.INTERRUPTED, "after": Status.SKIPPED, "waiting": Status.CANCELLED}
    assert summary.exit_code == 124


def test_stop_from_a_signal_gives_its_exit_code():
    jobs = jobs_of(job("long"))
    engine = make_engine(jobs, FakeExecutor(durations={"long": 30}))
    gevent.spawn_later(0.05, engine.stop, StopReason.SIGINT)
    summary = engine.run()
    assert statuses(summary) == {"long": Status.INTERRUPTED}
    assert summary.exit_code == 130


def test_kill_now_ends_runners_that_ignore_the_stop():
    class Stubborn(FakeExecutor):
        def run_attempt(self, job, attempt, env, log_path, stop, on_output):
            gevent.sleep(30)

    engine = make_engine(jobs_of(job("stubborn")), Stubborn())
    gevent.spawn_later(0.05, engine.stop, StopReason.SIGTERM)
    gevent.spawn_later(0.1, engine.kill_now)
    with gevent.Timeout(5):
        summary = engine.run()
    assert statuses(summary) == {"stubborn": Status.INTERRUPTED}
    assert summary.exit_code == 143


def test_each_job_gets_exactly_one_result_in_a_wide_dag():
    layers = [[job(f"l0_{i}") for i in range(10)]]
    for depth in range(1, 5):
        prev = layers[-1]
        layers.append(
            [job(f"l{depth}_{i}", needs=[prev[i].name, prev[(i + 1) % 10].name]) for i in range(10)]
        )
    jobs = jobs_of(*(j for layer in layers for j in layer))
    executor = FakeExecutor(default_duration=0.001)
    summary = make_engine(jobs, executor, jobs_limit=4).run()
    assert len(summary.results) == 50 and all(summary.results)
    position = {name: i for i, name in enumerate(executor.started)}
    for j in jobs.values():
        assert all(position[need] < position[j.name] for need in j.needs)


@pytest.mark.serial  # a wall-clock bound on this process's work: no other test may load the cores
@pytest.mark.slow
@pytest.mark.no_cover  # a time bound: line tracing would measure the tracer
def test_many_jobs_waiting_on_one_resource_cost_linear_time():
    # Each release used to rescan every waiter: 20,000 jobs on one resource took 85 s.
    import time

    jobs = jobs_of(*(job(f"j{i}", resources={"db": 1}) for i in range(20000)))
    started = time.monotonic()
    summary = make_engine(jobs, FakeExecutor(default_duration=0), jobs_limit=8, capacities={"db": 2}).run()
    assert all(summary.results)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("policy", ["stop", "fail-fast"])
def test_a_job_granted_its_resource_as_a_failure_halts_the_run_is_cancelled(policy):
    # The failing job's release wakes the waiter before the halt's kill reaches it: the
    # waiter must still end cancelled, and the run must end (it used to wait forever).
    jobs = jobs_of(job("bad", resources={"r": 1}), job("next", resources={"r": 1}))
    executor = FakeExecutor(durations={"bad": 0.05}, codes={"bad": 1})
    with gevent.Timeout(5):
        engine = make_engine(jobs, executor, policy=policy, capacities={"r": 1})
        summary = engine.run()
    assert statuses(summary) == {"bad": Status.FAILED, "next": Status.CANCELLED}
    assert executor.started == ["bad"]
    assert engine.gate.free == {"r": 1}  # the cancelled job's grant went back
    assert summary.exit_code == 1


# -- job timeouts, retries and stop reasons, without processes --


class TimingOut(FakeExecutor):
    """FakeExecutor whose `timeouts[name]` attempts (1-based) end timed out, as a job's
    own timeout ends them; records when each attempt started."""

    def __init__(self, timeouts, **kwargs):
        super().__init__(**kwargs)
        self.timeouts = timeouts
        self.started_at: list[float] = []

    def run_attempt(self, job, attempt, env, log_path, stop, on_output):
        self.started_at.append(time.monotonic())
        result = super().run_attempt(job, attempt, env, log_path, stop, on_output)
        if attempt in self.timeouts.get(job.name, ()) and not result.stopped:
            return ProcessResult(signal=signal.SIGTERM, timed_out=True)
        return result


def test_a_job_timeout_halts_the_run_like_a_failure():
    jobs = jobs_of(job("slow"), job("later"))
    summary = make_engine(jobs, TimingOut({"slow": [1]}), jobs_limit=1).run()
    assert statuses(summary) == {"slow": Status.TIMEOUT, "later": Status.CANCELLED}
    assert summary.exit_code == 1


def test_a_job_timeout_stops_the_run_under_fail_fast():
    jobs = jobs_of(job("slow"), job("long"), job("queued"))
    executor = TimingOut({"slow": [1]}, durations={"slow": 0.05, "long": 30})
    summary = make_engine(jobs, executor, jobs_limit=2, policy="fail-fast").run()
    assert statuses(summary) == {
        "slow": Status.TIMEOUT,
        "long": Status.INTERRUPTED,
        "queued": Status.CANCELLED,
    }
    assert summary.stop_reason == StopReason.FAIL_FAST and summary.exit_code == 1


def test_keep_going_goes_on_after_a_job_timeout():
    jobs = jobs_of(job("slow"), job("after", needs=["slow"]), job("later"))
    summary = make_engine(jobs, TimingOut({"slow": [1]}), jobs_limit=1, policy="keep-going").run()
    assert statuses(summary) == {"slow": Status.TIMEOUT, "after": Status.SKIPPED, "later": Status.OK}
    assert summary.exit_code == 1


def test_a_timed_out_attempt_is_retried():
    executor = TimingOut({"flaky": [1]})
    summary = make_engine(jobs_of(job("flaky", retries=1)), executor).run()
    assert executor.attempts == [("flaky", 1), ("flaky", 2)]
    assert statuses(summary) == {"flaky": Status.OK} and summary.results[0].attempts == 2


def test_retries_end_with_the_timeout_of_the_last_attempt():
    executor = TimingOut({"slow": [1, 2]})
    summary = make_engine(jobs_of(job("slow", retries=1)), executor).run()
    assert statuses(summary) == {"slow": Status.TIMEOUT} and summary.results[0].attempts == 2


def test_no_retry_starts_after_the_run_was_stopped():
    executor = FakeExecutor(durations={"long": 30})
    summary = make_engine(jobs_of(job("long", retries=3)), executor, timeout=0.1).run()
    assert executor.attempts == [("long", 1)]
    assert statuses(summary) == {"long": Status.INTERRUPTED} and summary.exit_code == 124


def test_retry_delay_waits_between_attempts():
    executor = TimingOut({}, codes={"flaky": [1, 0]}, default_duration=0)
    summary = make_engine(jobs_of(job("flaky", retries=1, retry_delay=0.3)), executor).run()
    assert statuses(summary) == {"flaky": Status.OK}
    first, second = executor.started_at
    assert second - first >= 0.25  # the 0.3 s delay, less timer slack


def test_a_stop_during_the_retry_delay_ends_the_job_without_another_attempt():
    executor = FakeExecutor(codes={"flaky": 1}, default_duration=0)
    engine = make_engine(jobs_of(job("flaky", retries=1, retry_delay=30)), executor)
    gevent.spawn_later(0.1, engine.stop, StopReason.SIGTERM)
    with gevent.Timeout(5):
        summary = engine.run()
    assert executor.attempts == [("flaky", 1)]
    assert summary.results[0].status == Status.FAILED and summary.exit_code == 143


def test_a_timed_out_job_allowed_to_fail_is_allowed():
    jobs = jobs_of(job("flaky", allow_failure=True), job("next", needs=["flaky"]))
    summary = make_engine(jobs, TimingOut({"flaky": [1]})).run()
    assert statuses(summary) == {"flaky": Status.ALLOWED, "next": Status.OK}
    assert summary.exit_code == 0


class Stubborn(FakeExecutor):
    """Ignores the stop for `seconds`, as a job ignoring SIGTERM until the SIGKILL."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def run_attempt(self, job, attempt, env, log_path, stop, on_output):
        gevent.sleep(self.seconds)
        return ProcessResult(signal=signal.SIGKILL, stopped=stop.is_set())


@pytest.mark.parametrize(
    "timeout, signal_after, code",
    [(0.05, 0.2, 124), (0.2, 0.05, 130)],
    ids=["timeout-then-signal", "signal-then-timeout"],
)
def test_the_first_stop_reason_decides_the_exit_code(timeout, signal_after, code):
    engine = make_engine(jobs_of(job("stubborn")), Stubborn(0.4), timeout=timeout)
    gevent.spawn_later(signal_after, engine.stop, StopReason.SIGINT)
    with gevent.Timeout(5):
        summary = engine.run()
    assert statuses(summary) == {"stubborn": Status.INTERRUPTED}
    assert summary.exit_code == code


# -- what the engine says about jobs it stopped or never ran (mutants that survived) --


class Notices(RunListener):
    def __init__(self):
        self.notices: list[str] = []

    def notice(self, text: str) -> None:
        self.notices.append(text)


@pytest.mark.parametrize("running, words", [(1, "1 running job"), (2, "2 running jobs")])
def test_the_run_timeout_says_how_many_running_jobs_it_stops(running, words):
    listener = Notices()
    jobs = jobs_of(*(job(f"long{i}") for i in range(running)), job("queued"))
    executor = FakeExecutor(default_duration=30)
    summary = make_engine(jobs, executor, jobs_limit=running, timeout=0.1, listener=listener).run()
    assert listener.notices == [f"orchestrate: run timed out after 100ms, stopping {words}"]
    assert summary.exit_code == 124


def test_kill_now_as_the_first_stop_is_an_interrupt_and_says_killed():
    engine = make_engine(jobs_of(job("stubborn")), Stubborn(30))
    gevent.spawn_later(0.05, engine.kill_now)
    with gevent.Timeout(5):
        summary = engine.run()
    assert statuses(summary) == {"stubborn": Status.INTERRUPTED}
    killed = summary.results[0]
    assert killed.reason == "killed" and summary.exit_code == 130
    # Killed inside its first attempt: no attempt ended, but it ran, in slot 0, once ready.
    assert (killed.attempts, killed.tries, killed.slot) == (0, [], 0)
    assert killed.ready is not None and killed.ready <= killed.start <= killed.end


def test_an_executor_that_raises_fails_its_job_with_the_error_as_the_reason():
    class Broken(FakeExecutor):
        def run_attempt(self, job, attempt, env, log_path, stop, on_output):
            raise RuntimeError("boom")

    jobs = jobs_of(job("broken"), job("after", needs=["broken"]))
    summary = make_engine(jobs, Broken()).run()
    assert statuses(summary) == {"broken": Status.FAILED, "after": Status.SKIPPED}
    assert [r.reason for r in summary.results] == [
        "internal error: RuntimeError: boom",
        "needs broken (failed)",
    ]


def test_unstarted_jobs_say_why_and_when_they_became_ready():
    jobs = jobs_of(job("bad"), job("queued"), job("after", needs=["bad"]))
    summary = make_engine(jobs, FakeExecutor(codes={"bad": 1}), jobs_limit=1).run()
    results = {r.name: r for r in summary.results}
    assert statuses(summary) == {"bad": Status.FAILED, "queued": Status.CANCELLED, "after": Status.SKIPPED}
    assert results["queued"].reason == "" and results["queued"].ready is not None
    assert results["after"].reason == "needs bad (failed)" and results["after"].ready is None
    assert results["queued"].log_path is None and results["after"].log_path is None


def test_a_result_carries_what_each_attempt_ended_with():
    class Recording(TimingOut):
        def run_attempt(self, job, attempt, env, log_path, stop, on_output):
            self.envs = [*getattr(self, "envs", []), env]
            if attempt == 1:
                return ProcessResult(exit_code=3, tail=b"first\n")
            gevent.sleep(0.01)
            return ProcessResult(signal=signal.SIGTERM, timed_out=True, tail=b"caf\xc3\xa9 \xff\n")

    executor = Recording({})
    jobs = jobs_of(job("flaky", retries=1, timeout=2.0, allow_failure=True))
    summary = make_engine(jobs, executor, jobs_limit=1).run()
    result = summary.results[0]
    assert (result.status, result.exit_code, result.signal) == (Status.ALLOWED, None, signal.SIGTERM)
    assert (result.tail, result.reason, result.timed_out) == ("café \ufffd\n", "timed out after 2s", True)
    assert result.attempts == 2 and result.start <= result.end and result.slot == 0
    assert [(t.number, t.exit_code, t.signal, t.timed_out, t.slot) for t in result.tries] == [
        (1, 3, None, False, 0),
        (2, None, signal.SIGTERM, True, 0),
    ]
    assert [
        (e["ORCHESTRATE_JOB"], e["ORCHESTRATE_ATTEMPT"], e["ORCHESTRATE_RUN_ID"]) for e in executor.envs
    ] == [
        ("flaky", "1", "test"),
        ("flaky", "2", "test"),
    ]


class Streaming(RunListener):
    wants_output = True

    def __init__(self):
        self.output: list[tuple[str, bytes]] = []

    def job_output(self, name: str, data: bytes) -> None:
        self.output.append((name, data))


def test_output_reaches_a_listener_that_wants_it():
    class Talking(FakeExecutor):
        def run_attempt(self, job, attempt, env, log_path, stop, on_output):
            on_output(b"hello\n")
            return ProcessResult(exit_code=0)

    listener = Streaming()
    summary = make_engine(jobs_of(job("talker")), Talking(), listener=listener).run()
    assert summary.exit_code == 0 and listener.output == [("talker", b"hello\n")]
