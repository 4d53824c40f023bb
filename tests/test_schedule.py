"""Critical-path scheduling: durations, priorities, the ready queue, the time left."""

import heapq
import time

import pytest

from orchestrator.graph import Plan
from orchestrator.model import Job
from orchestrator.schedule import (
    ArrivalQueue,
    CriticalPathQueue,
    Forecast,
    expected_durations,
    priorities,
    ready_queue,
    time_left,
)


def job(name, needs=()):
    return Job(name=name, run="true", needs=tuple(needs))


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


def test_a_hundred_thousand_jobs_take_well_under_a_second():
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
    started = time.perf_counter()
    got = priorities_of(plan, durations)
    elapsed = time.perf_counter() - started
    assert len(got) == 100_000
    assert got["j0"] == pytest.approx(sum(durations[f"j{i}"] for i in range(50)))
    assert elapsed < 2.0, f"{elapsed:.2f}s"  # about 0.1 s on this machine


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
    queue = ready_queue("file", {"a": 1.0, "b": 9.0}, {"a": 0, "b": 1})
    assert isinstance(queue, ArrivalQueue)
    queue.push("b")
    queue.push("a", holding=True)
    assert [queue.pop(), queue.pop()] == ["b", "a"]
    assert len(queue) == 0


def test_critical_is_a_schedule_and_nothing_else_is():
    assert isinstance(ready_queue("critical", {}, {}), CriticalPathQueue)
    with pytest.raises(ValueError, match="critical, file"):
        ready_queue("fastest", {}, {})


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


def test_before_anything_starts_the_forecast_is_the_lower_bound():
    jobs, durations = issue_workload()
    plan = plan_of(*jobs)
    forecast = forecast_for(plan, durations, 4)
    for name in plan.initially_ready():
        forecast.job_ready(name)
    assert forecast.time_left(now=0.0) == pytest.approx(7.2 / 4)
    assert forecast_for(plan, durations, 16).time_left(now=0.0) == pytest.approx(7.2 / 16)


def test_the_forecast_follows_a_running_chain():
    plan = plan_of(job("a"), job("b", ["a"]), job("c", ["b"]))
    forecast = forecast_for(plan, {"a": 2.0, "b": 3.0, "c": 1.0}, 8)
    forecast.job_ready("a")
    assert forecast.time_left(now=100.0) == 6.0
    forecast.job_started("a", at=100.0)
    assert forecast.time_left(now=101.5) == 4.5
    assert forecast.time_left(now=109.0) == 4.0  # a is late: at least b and c are still ahead
    forecast.job_ended("a")
    forecast.job_ready("b")
    forecast.job_started("b", at=110.0)
    assert forecast.time_left(now=111.0) == 3.0
    forecast.job_ended("b")
    forecast.job_ended("c")  # skipped, say: nothing is left
    assert forecast.time_left(now=111.0) == 0.0


def test_the_forecast_counts_the_work_of_running_jobs_only_once():
    plan = plan_of(*(job(f"j{i}") for i in range(4)))
    forecast = forecast_for(plan, dict.fromkeys(plan.names, 2.0), 2)
    for name in plan.names:
        forecast.job_ready(name)
    forecast.job_started("j0", at=0.0)
    forecast.job_started("j1", at=0.0)
    assert forecast.time_left(now=1.0) == pytest.approx((1.0 + 1.0 + 2.0 + 2.0) / 2)
