"""Critical-path scheduling: durations, priorities, the ready queue, the time left, the engine's order."""

import heapq
import itertools
import json
import statistics
import time

import pytest
from conftest import child, run_cli
from fakes import FakeExecutor, jobs_of, make_engine
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.engine import Engine, EngineConfig
from orchestrator.graph import Plan
from orchestrator.listeners import Fanout, RunListener
from orchestrator.model import Job
from orchestrator.options import Schedule
from orchestrator.results import JobResult, Status
from orchestrator.schedule import (
    ArrivalQueue,
    CriticalPathQueue,
    Forecast,
    expected_durations,
    expected_left,
    median,
    priorities,
    ready_queue,
    time_left,
)
from orchestrator.terminal import StatusLine


def job(name, needs=(), **fields):
    return Job(name=name, run="true", needs=tuple(needs), **fields)


def plan_of(*jobs):
    return Plan({j.name: j for j in jobs}, [j.name for j in jobs])


def priorities_of(plan, durations):
    return priorities(plan.names, plan.dependents, durations)


# ---------------------------------------------------------------- expected durations


def test_a_job_seen_before_keeps_its_own_duration():
    assert expected_durations(["a", "b"], {"a": 2.5, "b": 0.5}) == {"a": 2.5, "b": 0.5}


def test_a_job_never_seen_counts_as_the_median_known_duration():
    known = {"a": 1.0, "b": 3.0, "c": 10.0, "gone": 2.0}  # "gone" is not selected but is known
    assert expected_durations(["a", "new"], known) == {"a": 1.0, "new": 2.5}


def test_with_nothing_known_every_job_is_one_unit():
    assert expected_durations(["a", "b"], {}) == {"a": 1.0, "b": 1.0}


def test_unusable_records_are_ignored():
    durations = expected_durations(["a", "b", "c"], {"a": float("nan"), "b": -1.0, "c": 4.0})
    assert durations == {"a": 4.0, "b": 4.0, "c": 4.0}


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=40))
def test_median_is_the_statistics_median(values):
    assert median(values) == statistics.median(values)


# ---------------------------------------------------------------- priorities


def test_priority_is_own_duration_plus_the_longest_path_after_it():
    # a -> b -> d and a -> c -> d, where c is slower than b
    plan = plan_of(job("a"), job("b", ["a"]), job("c", ["a"]), job("d", ["b", "c"]))
    got = priorities_of(plan, {"a": 1.0, "b": 2.0, "c": 5.0, "d": 0.5})
    assert got == {"d": 0.5, "c": 5.5, "b": 2.5, "a": 6.5}


def test_priorities_follow_needs_written_before_the_job_they_name():
    plan = plan_of(job("c", ["b"]), job("b", ["a"]), job("a"))
    assert priorities_of(plan, dict.fromkeys("abc", 1.0)) == {"a": 3.0, "b": 2.0, "c": 1.0}


def test_with_unit_durations_priority_is_depth():
    plan = plan_of(job("x"), job("c1"), job("c2", ["c1"]), job("c3", ["c2"]))
    got = priorities_of(plan, expected_durations(plan.names, {}))
    assert got == {"x": 1.0, "c1": 3.0, "c2": 2.0, "c3": 1.0}


def test_a_cycle_is_refused():
    with pytest.raises(ValueError, match="cycle"):
        priorities(["a", "b"], {"a": ["b"], "b": ["a"]}, {"a": 1.0, "b": 1.0})


@pytest.mark.no_cover  # a time bound: line tracing would measure the tracer
def test_a_hundred_thousand_jobs_take_well_under_a_few_seconds():
    # Chains of 50 where every 5th job also needs the job 10 back, as bench (d)'s file.
    names = [f"j{i}" for i in range(100_000)]
    jobs = {}
    for i, name in enumerate(names):
        needs = [] if i % 50 == 0 else [names[i - 1]]
        if i % 5 == 1 and i % 50 >= 10:
            needs.append(names[i - 10])
        jobs[name] = job(name, needs)
    plan = Plan(jobs, names)
    durations = expected_durations(names, {name: 0.001 * (i % 7) for i, name in enumerate(names[::2])})
    started = time.process_time()  # CPU seconds: 2 cores shared by many, wall time says little
    got = priorities_of(plan, durations)
    shuffled = priorities(names[::-1], plan.dependents, durations)  # not topological: Kahn's way
    elapsed = time.process_time() - started
    assert got == shuffled
    assert len(got) == 100_000
    assert got["j0"] == pytest.approx(sum(durations[f"j{i}"] for i in range(50)))
    assert elapsed < 3.0, f"{elapsed:.2f}s"  # 0.2 s + 0.5 s on this machine


# ---------------------------------------------------------------- ready queues


def test_the_longest_path_pops_first():
    queue = CriticalPathQueue({"a": 1.0, "b": 5.0, "c": 3.0}, {"a": 0, "b": 1, "c": 2})
    for name in "abc":
        queue.push(name)
    assert [queue.pop() for _ in range(len(queue))] == ["b", "c", "a"]


def test_equal_priorities_pop_in_file_order_whatever_the_push_order():
    index = {f"j{i}": i for i in range(20)}
    queue = CriticalPathQueue(dict.fromkeys(index, 1.0), index)
    for name in reversed(list(index)):
        queue.push(name)
    assert [queue.pop() for _ in range(20)] == list(index)


def test_a_job_holding_resources_goes_first():
    queue = CriticalPathQueue({"urgent": 9.0, "holder": 1.0}, {"urgent": 0, "holder": 1})
    queue.push("urgent")
    queue.push("holder", holding=True)
    assert [queue.pop(), queue.pop()] == ["holder", "urgent"]


def test_file_schedule_starts_jobs_in_the_order_they_became_ready():
    queue = ready_queue(Schedule.FILE, {"a": 1.0, "b": 9.0}, {"a": 0, "b": 1})
    assert isinstance(queue, ArrivalQueue)
    queue.push("b")
    queue.push("a", holding=True)
    assert [queue.pop(), queue.pop()] == ["b", "a"]
    assert len(queue) == 0


def test_critical_schedule_is_the_heap():
    assert isinstance(ready_queue(Schedule.CRITICAL, {}, {}), CriticalPathQueue)


def test_the_queue_matches_a_sort_on_random_pushes_and_pops():
    import random

    rng = random.Random(7)
    names = [f"j{i}" for i in range(500)]
    priority = {name: float(rng.randrange(10)) for name in names}
    index = {name: i for i, name in enumerate(names)}
    queue = CriticalPathQueue(priority, index)
    waiting: set[str] = set()
    for name in names:
        queue.push(name)
        waiting.add(name)
        if rng.random() < 0.4:
            best = min(waiting, key=lambda n: (-priority[n], index[n]))
            assert queue.pop() == best
            waiting.discard(best)
    assert [queue.pop() for _ in range(len(queue))] == sorted(waiting, key=lambda n: (-priority[n], index[n]))


# ---------------------------------------------------------------- whole schedules


def simulate(plan, durations, slots, queue):
    """List scheduling on `slots` with exact durations: the makespan and the start order."""
    clock, running, order = 0.0, [], []
    for name in plan.initially_ready():
        queue.push(name)
    while len(queue) or running:
        while len(queue) and len(running) < slots:
            name = queue.pop()
            order.append(name)
            heapq.heappush(running, (clock + durations[name], plan.index[name], name))
        clock, _, name = heapq.heappop(running)
        for ready in plan.finish(name, True)[0]:
            queue.push(ready)
    return clock, order


def issue_workload():
    """Issue 13's shape: 48 jobs of 0.1 s, one of 1.2 s and a chain of 4 x 0.3 s listed last."""
    jobs = [job(f"s{i}") for i in range(48)] + [job("long")]
    jobs += [job("c0")] + [job(f"c{i}", [f"c{i - 1}"]) for i in range(1, 4)]
    durations = {f"s{i}": 0.1 for i in range(48)} | {"long": 1.2} | {f"c{i}": 0.3 for i in range(4)}
    return jobs, durations


def test_critical_path_order_reaches_the_lower_bound_where_file_order_does_not():
    jobs, durations = issue_workload()
    bound = max(1.2, sum(durations.values()) / 4)  # 1.2 s of chain vs 7.2 s of work on 4 slots
    plan = plan_of(*jobs)
    order = priorities_of(plan, durations)
    critical, started = simulate(plan, durations, 4, CriticalPathQueue(order, plan.index))
    assert started[:2] == ["long", "c0"]
    assert critical == pytest.approx(bound)
    file_order, _ = simulate(plan_of(*jobs), durations, 4, ArrivalQueue())
    assert file_order > 1.3 * bound


def test_with_no_history_the_deeper_chain_starts_first():
    jobs, _ = issue_workload()
    plan = plan_of(*jobs)
    by_depth = priorities_of(plan, expected_durations(plan.names, {}))
    _, started = simulate(plan, dict.fromkeys(plan.names, 1.0), 4, CriticalPathQueue(by_depth, plan.index))
    assert started[0] == "c0"
    assert started[1:4] == ["s0", "s1", "s2"]  # then file order among equals


# ---------------------------------------------------------------- the time left


def test_time_left_is_the_longer_of_the_chain_and_the_work_per_slot():
    assert time_left(remaining_path=3.0, remaining_work=8.0, slots=4) == 3.0
    assert time_left(remaining_path=1.0, remaining_work=8.0, slots=4) == 2.0
    assert time_left(remaining_path=0.0, remaining_work=-0.5, slots=0) == 0.0


def forecast_for(plan, durations, slots):
    return Forecast(durations, priorities_of(plan, durations), slots)


def ended(name):
    return JobResult(name, Status.OK)


def test_before_anything_starts_the_forecast_is_the_lower_bound():
    jobs, durations = issue_workload()
    plan = plan_of(*jobs)
    forecast = Forecast.for_plan(plan.names, plan.dependents, durations, (), 4)
    for name in plan.initially_ready():
        forecast.job_ready(name, at=0.0)
    assert forecast.time_left(now=0.0) == pytest.approx(7.2 / 4)
    assert forecast_for(plan, durations, 16).time_left(now=0.0) == pytest.approx(7.2 / 16)


def test_the_forecast_follows_a_running_chain():
    plan = plan_of(job("a"), job("b", ["a"]), job("c", ["b"]))
    forecast = forecast_for(plan, {"a": 4.0, "b": 3.0, "c": 1.0}, 8)
    forecast.job_ready("a", at=100.0)
    assert forecast.time_left(now=100.0) == 8.0
    forecast.job_started("a", slot=0, at=100.0)
    assert forecast.time_left(now=101.5) == 6.5
    assert forecast.time_left(now=109.0) == 5.0  # a is late: b and c, and a's last second
    forecast.job_finished(ended("a"))
    forecast.job_ready("b", at=109.0)
    forecast.job_started("b", slot=0, at=110.0)
    assert forecast.time_left(now=111.0) == 3.0
    forecast.job_finished(ended("b"))
    forecast.job_finished(JobResult("c", Status.SKIPPED))
    assert forecast.time_left(now=111.0) == 0.0


def test_a_running_job_counts_down_to_a_small_remainder_it_keeps_while_late():
    assert [expected_left(60.0, elapsed) for elapsed in (0.0, 10.0, 50.0, 54.0, 60.0, 600.0)] == [
        60.0,
        50.0,
        10.0,
        6.0,  # a tenth of what it was expected to take ...
        6.0,
        6.0,  # ... for as long as it runs late
    ]
    assert expected_left(5.0, 3.5) == 1.5
    assert expected_left(5.0, 300.0) == 1.0  # never under a second (or its whole expected time)
    assert expected_left(0.3, 0.1) == 0.3 and expected_left(0.3, 60.0) == 0.3
    assert expected_left(0.0, 5.0) == 0.0
    assert expected_left(4.0, -1.0) == 4.0  # a clock read before the start event's


def test_between_events_the_forecast_counts_down_with_the_clock():
    plan = plan_of(job("long"), job("after", ["long"]), job("short"))
    forecast = forecast_for(plan, {"long": 10.0, "after": 2.0, "short": 1.0}, 2)
    for name in ("long", "short"):
        forecast.job_ready(name, at=50.0)
    forecast.job_started("long", slot=0, at=50.0)
    forecast.job_started("short", slot=1, at=50.0)
    forecast.job_finished(ended("short"))  # the last event: only the clock moves from here
    lefts = [forecast.time_left(now=50.0 + elapsed) for elapsed in (0.0, 1.0, 2.5, 8.0, 9.5, 30.0, 300.0)]
    assert lefts == [12.0, 11.0, 9.5, 4.0, 3.0, 3.0, 3.0]  # after's 2 s plus long's last second


def test_the_forecast_counts_the_work_of_running_jobs_only_once():
    plan = plan_of(*(job(f"j{i}") for i in range(4)))
    forecast = forecast_for(plan, dict.fromkeys(plan.names, 2.0), 2)
    for name in plan.names:
        forecast.job_ready(name, at=0.0)
    forecast.job_started("j0", slot=0, at=0.0)
    forecast.job_started("j1", slot=1, at=0.0)
    assert forecast.time_left(now=1.0) == pytest.approx((1.0 + 1.0 + 2.0 + 2.0) / 2)


def test_resumed_jobs_are_not_ahead_in_the_forecast():
    plan = plan_of(job("a"), job("b", ["a"]))
    forecast = Forecast.for_plan(plan.names, plan.dependents, {"a": 5.0, "b": 1.0}, ["a"], 1)
    forecast.job_ready("a", at=0.0)
    assert forecast.time_left(now=0.0) == 1.0


def test_the_forecast_drives_the_status_line_in_a_real_run():
    jobs, durations = engine_workload(scale=0.1)  # 0.72 s of work on 4 slots
    plan = Plan(jobs, list(jobs))
    forecast = Forecast.for_plan(plan.names, plan.dependents, durations, (), 4)
    status = StatusLine(len(jobs), width=lambda: 200, time_left=lambda: forecast.time_left(time.time()))
    seen = []

    class Watch(RunListener):
        def job_finished(self, result):
            seen.append((status.text(), forecast.time_left(time.time())))

    make_engine(
        jobs, FakeExecutor(durations), listener=Fanout([forecast, status, Watch()]), jobs_limit=4
    ).run()
    lefts = [left for _, left in seen]
    assert 0 < lefts[0] <= 0.72 / 4 and lefts[-1] == 0.0
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(lefts))  # it only ever shrinks
    assert seen[0][0].startswith("[1/53] ~") and "ms left, " in seen[0][0]
    assert seen[-1][0] == "[53/53] 0 running"  # nothing ahead: no time left shown


# ---------------------------------------------------------------- in the engine (fake executor)


def engine_workload(scale=0.01):
    """issue_workload() with every duration times `scale`: the fake executor's seconds."""
    jobs, durations = issue_workload()
    return jobs_of(*jobs), {name: seconds * scale for name, seconds in durations.items()}


def test_the_long_job_and_the_chain_start_first():
    jobs, durations = engine_workload()
    executor = FakeExecutor(durations)
    summary = make_engine(jobs, executor, jobs_limit=4, expected_durations=durations).run()
    assert summary.exit_code == 0
    assert executor.started[:4] == ["long", "c0", "s0", "s1"]
    assert executor.started.index("c3") < executor.started.index("s47")  # the chain kept going


def test_with_no_history_a_deeper_chain_starts_first():
    jobs, durations = engine_workload()
    executor = FakeExecutor(durations)
    make_engine(jobs, executor, jobs_limit=4).run()
    assert executor.started[:4] == ["c0", "s0", "s1", "s2"]  # then file order: "long" is last


def test_file_schedule_keeps_the_order_jobs_became_ready():
    jobs, durations = engine_workload()
    executor = FakeExecutor(durations)
    make_engine(jobs, executor, jobs_limit=4, schedule=Schedule.FILE, expected_durations=durations).run()
    assert executor.started[:4] == ["s0", "s1", "s2", "s3"]
    assert executor.started.index("long") > executor.started.index("s47")


@pytest.mark.parametrize(
    ("schedule", "order"), [(Schedule.CRITICAL, ["x", "a", "b"]), (Schedule.FILE, ["x", "b", "a"])]
)
def test_ties_keep_file_order_even_when_ready_later(schedule, order):
    # x is deepest, so it starts first; a (ready when x ends) ties with b (ready from the
    # start): critical order takes a, written first; file order takes b, ready first.
    jobs = jobs_of(job("x"), job("a", ["x"]), job("b"))
    executor = FakeExecutor()
    make_engine(jobs, executor, jobs_limit=1, schedule=schedule).run()
    assert executor.started == order


def test_a_long_job_waiting_for_a_resource_neither_deadlocks_nor_starves_the_others():
    shorts = [job(f"d{i}", resources={"db": 1}) for i in range(6)] + [job(f"p{i}") for i in range(6)]
    jobs = jobs_of(*shorts, job("long", resources={"db": 1}), job("report", ["long"]))
    durations = dict.fromkeys(jobs, 0.01) | {"long": 0.1}
    executor = FakeExecutor(durations)
    summary = make_engine(
        jobs, executor, jobs_limit=2, capacities={"db": 1}, expected_durations=durations, timeout=30
    ).run()
    assert {r.status for r in summary.results} == {Status.OK}
    assert executor.started[0] == "long"
    assert executor.resource_peak["db"] == 1


def test_a_big_demand_is_not_overtaken_by_later_more_urgent_small_ones():
    # `big` waits for both db units while `early` holds one; the late jobs, ready after it
    # and more urgent, must queue behind it at the gate rather than take the free unit.
    late = [job(f"late{i}", ["a0"], resources={"db": 1}) for i in range(4)]
    after = [job(f"after{i}", [f"late{i}"]) for i in range(4)]
    jobs = jobs_of(
        job("early", resources={"db": 1}), job("big", resources={"db": 2}), job("a0"), *late, *after
    )
    durations = dict.fromkeys(jobs, 0.01) | {"early": 0.1, "a0": 0.03} | {f"after{i}": 0.05 for i in range(4)}
    executor = FakeExecutor(durations)
    summary = make_engine(
        jobs, executor, jobs_limit=4, capacities={"db": 2}, expected_durations=durations, timeout=30
    ).run()
    assert summary.exit_code == 0
    assert executor.started.index("big") < min(executor.started.index(j.name) for j in late)


def test_a_job_holding_resources_starts_before_more_urgent_jobs_that_hold_none():
    # holder takes db at once; urgent (ready after n) then needs db too. Were holder to wait
    # behind the m jobs for the one slot, urgent would wait for all of them (inversion).
    chain_after = [job("u1", ["urgent"]), job("u2", ["u1"]), job("u3", ["u2"])]
    jobs = jobs_of(
        job("holder", resources={"db": 1}),
        job("n"),
        job("urgent", ["n"], resources={"db": 1}),
        *chain_after,
        *(job(f"m{i}") for i in range(4)),
    )
    durations = dict.fromkeys(jobs, 0.01) | {f"m{i}": 0.02 for i in range(4)}
    executor = FakeExecutor(durations)
    make_engine(jobs, executor, jobs_limit=1, capacities={"db": 1}, expected_durations=durations).run()
    assert executor.started[:3] == ["holder", "n", "urgent"]
    assert executor.started.index("urgent") < executor.started.index("m0")


def test_resumed_jobs_count_as_no_time():
    jobs, durations = engine_workload()
    config = EngineConfig(run_id="t", expected_durations=durations, resumed=frozenset({"long"}))
    engine = Engine(Plan(jobs, list(jobs)), FakeExecutor(durations), RunListener(), config)
    assert engine.priority["long"] == 0.0
    assert engine.priority["c0"] == pytest.approx(0.012)


# ---------------------------------------------------------------- through the command line


ORDER_JOBS = """\
version: 1
jobs:
  a: {{run: "echo a >> {order}"}}
  b: {{run: "echo b >> {order}"}}
  c0: {{run: "echo c0 >> {order}"}}
  c1: {{run: "echo c1 >> {order}", needs: [c0]}}
  c2: {{run: "echo c2 >> {order}", needs: [c1]}}
"""


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize(
    ("schedule", "order"),
    [("critical", ["c0", "c1", "a", "b", "c2"]), ("file", ["a", "b", "c0", "c1", "c2"])],
)
def test_the_command_line_schedules_in_worker_processes_too(tmp_path, write_jobs, processes, schedule, order):
    path = tmp_path / "order.txt"
    jobs = write_jobs(ORDER_JOBS.format(order=path))
    result = run_cli("run", jobs, "-j", "1", "--processes", processes, "--schedule", schedule)
    assert result.returncode == 0, result.stderr
    assert path.read_text().split() == order


def test_an_unknown_schedule_is_a_usage_error(write_jobs):
    result = run_cli("run", write_jobs(ORDER_JOBS.format(order="x")), "--schedule", "fastest")
    assert result.returncode == 2
    assert "invalid choice: 'fastest' (choose from 'critical', 'file')" in result.stderr


def test_a_second_run_starts_by_the_durations_the_first_measured(tmp_path, write_jobs):
    # Run 1 knows nothing: one slot, file order. Run 2 knows what each took: the longest
    # first; `new`, never seen, counts as the median known duration (mid's own, exactly),
    # so it ties with mid and the file's order puts it first.
    path = tmp_path / "order.txt"

    def jobs(*names):
        seconds = {"short": 0, "new": 0, "mid": 0.2, "long": 0.4}
        lines = ["jobs:"]
        for name in names:
            run = f"{child('sleep', seconds[name])} && echo {name} >> {path}"
            lines.append(f"  {name}: {{run: {json.dumps(run)}}}")
        return write_jobs("\n".join(lines) + "\n")

    def order(file):
        path.unlink(missing_ok=True)
        result = run_cli("run", file, "-j", "1")
        assert result.returncode == 0, result.stderr
        return path.read_text().split()

    assert order(jobs("short", "mid", "long")) == ["short", "mid", "long"]
    assert order(jobs("short", "new", "mid", "long")) == ["long", "new", "mid", "short"]
