"""The weighted FIFO resource gate, with greenlets and no processes."""

import gevent
import pytest

from orchestrator.gates import ResourceGate


def test_a_demand_takes_all_units_at_once_or_waits():
    gate = ResourceGate({"r": 3})
    gate.acquire({"r": 2})
    waiter = gevent.spawn(gate.acquire, {"r": 2})
    gevent.sleep(0.01)
    assert not waiter.dead and gate.free["r"] == 1
    gate.release({"r": 2})
    waiter.join(1)
    assert waiter.successful() and gate.free["r"] == 1


def test_fifo_a_big_demand_is_not_starved_by_small_ones():
    gate = ResourceGate({"r": 2})
    gate.acquire({"r": 1})
    order = []

    def take(name, units, hold):
        gate.acquire({"r": units})
        order.append(name)
        gevent.sleep(hold)
        gate.release({"r": units})

    big = gevent.spawn(take, "big", 2, 0.01)
    gevent.sleep(0)
    smalls = [gevent.spawn(take, f"small{i}", 1, 0.01) for i in range(3)]
    gevent.sleep(0.02)
    assert order == []  # one unit is free, but the earlier big demand reserves it
    gate.release({"r": 1})
    gevent.joinall([big, *smalls], timeout=2)
    assert order[0] == "big"


def test_other_resources_are_not_blocked_by_a_waiter():
    gate = ResourceGate({"a": 1, "b": 1})
    gate.acquire({"a": 1})
    waiting = gevent.spawn(gate.acquire, {"a": 1})
    gevent.sleep(0)
    other = gevent.spawn(gate.acquire, {"b": 1})
    other.join(1)
    assert other.successful() and not waiting.dead


def test_no_deadlock_with_overlapping_multi_resource_demands():
    gate = ResourceGate({"a": 1, "b": 1})
    done = []

    def worker(name, demand):
        for _ in range(20):
            with gate.hold(demand):
                gevent.sleep(0.001)
        done.append(name)

    greenlets = [
        gevent.spawn(worker, "ab", {"a": 1, "b": 1}),
        gevent.spawn(worker, "ba", {"b": 1, "a": 1}),
        gevent.spawn(worker, "a", {"a": 1}),
        gevent.spawn(worker, "b", {"b": 1}),
    ]
    gevent.joinall(greenlets, timeout=5)
    assert sorted(done) == ["a", "ab", "b", "ba"]
    assert gate.free == {"a": 1, "b": 1}


def test_a_killed_waiter_gives_back_its_place():
    gate = ResourceGate({"r": 1})
    gate.acquire({"r": 1})
    waiter = gevent.spawn(gate.acquire, {"r": 1})
    gevent.sleep(0)
    waiter.kill()
    gate.release({"r": 1})
    assert gate.free["r"] == 1 and not gate.waiters


@pytest.mark.parametrize(
    "demand, message",
    [({"r": 2}, "2 units of 'r' asked, capacity 1"), ({"x": 1}, "1 units of 'x' asked, capacity 0")],
    ids=["over-capacity", "undeclared"],
)
def test_a_demand_no_capacity_can_meet_is_refused_at_once(demand, message):
    gate = ResourceGate({"r": 1})
    with pytest.raises(ValueError) as refused:
        gate.acquire(demand)
    assert str(refused.value) == message
    assert gate.free == {"r": 1} and not gate.waiters


def test_a_waiter_killed_after_its_grant_gives_the_units_back():
    gate = ResourceGate({"r": 2})
    gate.acquire({"r": 2})
    waiter = gevent.spawn(gate.acquire, {"r": 2})
    gevent.sleep(0)
    waiter.kill(block=False)  # the kill is on its way (as the engine's cancel sends it)...
    gate.release({"r": 2})  # ...when the grant comes
    assert gate.free["r"] == 0 and not gate.waiters  # granted
    assert waiter.join(1) is None and waiter.dead
    assert gate.free["r"] == 2 and not gate.waiters
    taker = gevent.spawn(gate.acquire, {"r": 2})
    assert taker.join(1) is None and taker.successful()


def test_try_acquire_takes_free_units_at_once_but_never_past_a_waiter():
    gate = ResourceGate({"r": 2, "s": 1})
    assert gate.try_acquire({"r": 1})
    assert gate.free == {"r": 1, "s": 1}
    big = gevent.spawn(gate.acquire, {"r": 2})
    gevent.sleep(0)
    assert not gate.try_acquire({"r": 1})  # free, but reserved by the earlier big demand
    assert gate.try_acquire({"s": 1})  # nobody waits for s
    assert not gate.try_acquire({"s": 1}) and not gate.try_acquire({"unknown": 1})
    assert gate.free == {"r": 1, "s": 0}
    gate.release({"r": 1})
    big.join(1)
    assert big.successful() and gate.free["r"] == 0
