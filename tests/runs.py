"""Hand-built run results for the trace and HTML report tests: small pipelines and big runs."""

from __future__ import annotations

import random

from orchestrator.results import Attempt, JobResult, RunSummary, Status

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def job(
    name: str,
    *tries: Attempt,
    ready: float | None = None,
    status: Status | None = None,
    tail: str = "",
) -> JobResult:
    """A job that ran these attempts (times in seconds after T0), its status from the last."""
    last = tries[-1]
    if status is None:
        status = Status.OK if last.exit_code == 0 else Status.FAILED
    return JobResult(
        name=name,
        status=status,
        exit_code=last.exit_code,
        signal=last.signal,
        attempts=len(tries),
        start=tries[0].start,
        end=last.end,
        tail=tail,
        ready=None if ready is None else T0 + ready,
        slot=last.slot,
        host=last.host,
        tries=list(tries),
    )


def attempt(
    number: int, start: float, end: float, slot: int, exit_code: int = 0, **fields: object
) -> Attempt:
    return Attempt(number, T0 + start, T0 + end, exit_code=exit_code, slot=slot, **fields)  # type: ignore[arg-type]


def pipeline() -> tuple[RunSummary, dict[str, tuple[str, ...]]]:
    """gen -> build -> test (test fails once, then passes), lint on its own, docs after gen
    waiting a second for a slot; run with -j 2 for 10.5 seconds."""
    results = [
        job("gen", attempt(1, 0, 2, slot=0), ready=0),
        job("lint", attempt(1, 0, 3, slot=1), ready=0),
        job("build", attempt(1, 2, 7, slot=0), ready=2),
        job("docs", attempt(1, 3, 4, slot=1), ready=2),
        job(
            "test",
            attempt(1, 7, 8, slot=1, exit_code=1),
            attempt(2, 8.5, 10, slot=0),
            ready=7,
            tail="1 failed\n",
        ),
    ]
    needs = {"gen": (), "lint": (), "build": ("gen",), "docs": ("gen",), "test": ("build",)}
    return RunSummary(results, elapsed=10.5, run_id="r-1", started=T0), needs


def big_run(count: int, slots: int = 8, seed: int = 7) -> tuple[RunSummary, dict[str, tuple[str, ...]]]:
    """`count` jobs with random needs on earlier ones, scheduled on `slots` lanes as an engine
    would: each attempt takes the slot free first; about one job in 20 retries once."""
    rng = random.Random(seed)
    free_at = [0.0] * slots
    results: list[JobResult] = []
    needs: dict[str, tuple[str, ...]] = {}
    ends: dict[str, float] = {}
    for index in range(count):
        name = f"job-{index}"
        earlier = rng.sample(range(index), min(index, rng.choice((0, 1, 2))))
        needs[name] = tuple(f"job-{n}" for n in earlier)
        ready = max((ends[need] for need in needs[name]), default=0.0)
        tries = []
        not_before = ready
        retried = rng.random() < 0.05
        for number in (1, 2) if retried else (1,):
            slot = min(range(slots), key=lambda lane: free_at[lane])
            start = max(free_at[slot], not_before) + 0.001
            end = start + rng.uniform(0.02, 0.5)
            failed = number == 1 and retried or rng.random() < 0.02
            tries.append(attempt(number, start, end, slot=slot, exit_code=1 if failed else 0))
            free_at[slot] = end
            not_before = end + 0.1
        results.append(job(name, *tries, ready=ready))
        ends[name] = tries[-1].end - T0
    elapsed = max(ends.values(), default=0.0) + 0.01
    return RunSummary(results, elapsed=elapsed, run_id="big", started=T0), needs
