"""Admission gates: weighted resource semaphores taken all at once, in FIFO order."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from gevent.event import Event


class _Waiter:
    __slots__ = ("demand", "granted")

    def __init__(self, demand: Mapping[str, int]):
        self.demand = demand
        self.granted = Event()


class ResourceGate:
    """Named capacities; a demand gets every unit it asks for at once or waits.

    Waiters are served first come, first served per resource: a waiter that cannot be
    served yet reserves its resources against later waiters, so a job asking for many
    units is never starved by a stream of small ones, and no job ever holds part of what
    it needs (so there is no deadlock).
    """

    def __init__(self, capacity: Mapping[str, int]):
        self.capacity = dict(capacity)
        self.free = dict(capacity)
        self.waiters: deque[_Waiter] = deque()

    def acquire(self, demand: Mapping[str, int]) -> None:
        """Block this greenlet until the whole demand is granted."""
        if not demand:
            return
        for name, units in demand.items():
            if units > self.capacity.get(name, 0):
                raise ValueError(f"{units} units of {name!r} asked, capacity {self.capacity.get(name, 0)}")
        waiter = _Waiter(demand)
        self.waiters.append(waiter)
        self._grant()
        try:
            waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.release(demand)
            else:
                self.waiters.remove(waiter)
                self._grant()
            raise

    def try_acquire(self, demand: Mapping[str, int]) -> bool:
        """Take the whole demand now if a new waiter would be served at once, else nothing:
        every waiter reserves its resources, so nobody queued earlier is overtaken."""
        if any(units > self.free.get(name, 0) for name, units in demand.items()):
            return False
        if any(not waiter.demand.keys().isdisjoint(demand) for waiter in self.waiters):
            return False
        for name, units in demand.items():
            self.free[name] -= units
        return True

    def release(self, demand: Mapping[str, int]) -> None:
        for name, units in demand.items():
            self.free[name] += units
        self._grant()

    def _grant(self) -> None:
        reserved: set[str] = set()
        granted = []
        for waiter in self.waiters:
            names = waiter.demand.keys()
            if reserved.isdisjoint(names) and all(
                self.free[n] >= units for n, units in waiter.demand.items()
            ):
                for name, units in waiter.demand.items():
                    self.free[name] -= units
                granted.append(waiter)
            else:
                reserved.update(names)
                if len(reserved) == len(self.capacity):
                    break  # every resource is promised to someone earlier: nobody later fits
        for waiter in granted:
            self.waiters.remove(waiter)
            waiter.granted.set()

    @contextmanager
    def hold(self, demand: Mapping[str, int]) -> Iterator[None]:
        self.acquire(demand)
        try:
            yield
        finally:
            self.release(demand)
