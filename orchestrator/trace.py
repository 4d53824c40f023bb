"""The run in Chrome's trace-event format, for Perfetto, chrome://tracing and speedscope."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .report import iso_utc, json_safe, write_atomically
from .results import JobResult, RunSummary
from .timeline import Bar, Needs, bars, critical_path, lay_out, path_seconds, run_origin, waits

# Three processes, so Perfetto shows three groups: the slots (what ran), the critical path,
# and the waits (folded away until wanted; at 2,000 ready jobs they are many lanes).
SLOTS_PID, CRITICAL_PID, WAITING_PID = 1, 2, 3
# A lane's tid is its number plus one: older Perfetto versions merge tid 0 into tid 1
# (fixed in google/perfetto#2278); the lane's name and each event's args give the slot.
TID_OFFSET = 1

Event = dict[str, Any]


def trace_events(summary: RunSummary, run_info: dict[str, Any], needs: Needs | None = None) -> dict[str, Any]:
    """The trace as a JSON-ready object: `traceEvents` (µs since the run started) and the
    run's identity under `otherData`."""
    origin = run_origin(summary)
    path = critical_path(summary.results, needs or {})
    drawn = bars(summary, critical=[result.name for result in path])

    def micros(moment: float) -> float:
        return round((moment - origin) * 1e6, 1)

    events: list[Event] = [
        *_process_name(SLOTS_PID, "orchestrate: slots"),
        *_process_name(CRITICAL_PID, "orchestrate: critical path"),
        *_process_name(WAITING_PID, "orchestrate: waiting for a slot or resource"),
        _thread_name(CRITICAL_PID, 0, f"critical path ({path_seconds(path):.1f}s)"),
    ]
    for lane in sorted({bar.lane for bar in drawn}):
        events.append(_thread_name(SLOTS_PID, lane, f"slot {lane}"))
    for bar in drawn:
        events.append(_attempt_event(bar, micros(bar.start), micros(bar.end)))
    events += _critical_events(path, micros)
    events += _wait_events(summary, micros)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "run_id": json_safe(run_info.get("run_id", summary.run_id)),
            "job_file": json_safe(run_info.get("job_file")),
            "started": iso_utc(origin),
            "exit_code": run_info.get("exit_code", summary.exit_code),
            "critical_path": [json_safe(result.name) for result in path],
            "critical_path_seconds": round(path_seconds(path), 3),
        },
    }


def write_trace_file(
    path: str, summary: RunSummary, run_info: dict[str, Any], needs: Needs | None = None
) -> None:
    """Write the trace to `path`, atomically, as compact JSON (it can hold many events)."""
    data = json.dumps(trace_events(summary, run_info, needs), separators=(",", ":"))
    write_atomically(path, data.encode("ascii"))


def _attempt_event(bar: Bar, start: float, end: float) -> Event:
    args: dict[str, Any] = {
        "status": bar.status,
        "exit_code": bar.exit_code,
        "attempt": bar.attempt,
        "attempts": bar.attempts,
        "slot": bar.lane,
    }
    if bar.signal_name:
        args["signal"] = bar.signal_name
    if bar.timed_out:
        args["timed_out"] = True
    if bar.host:
        args["host"] = json_safe(bar.host)
    if bar.critical:
        args["critical_path"] = True
    return {
        "ph": "X",
        "name": json_safe(bar.name),
        "cat": "job" if bar.status != "retried" else "job,retried",
        "pid": SLOTS_PID,
        "tid": bar.lane + TID_OFFSET,
        "ts": start,
        "dur": round(end - start, 1),
        "args": args,
    }


def _critical_events(path: list[JobResult], micros: Callable[[float], float]) -> list[Event]:
    """The critical path's jobs, first start to last end, in one lane."""
    events: list[Event] = []
    previous_end = 0.0
    for result in path:
        if result.start is not None and result.end is not None:
            # Clocks read in different places may overlap a need and its job by a hair.
            start = max(micros(result.start), previous_end)
            previous_end = max(start, micros(result.end))
            events.append(
                {
                    "ph": "X",
                    "name": json_safe(result.name),
                    "cat": "critical",
                    "pid": CRITICAL_PID,
                    "tid": TID_OFFSET,
                    "ts": start,
                    "dur": round(previous_end - start, 1),
                    "args": {"status": result.status.value, "attempts": result.attempts},
                }
            )
    return events


def _wait_events(summary: RunSummary, micros: Callable[[float], float]) -> list[Event]:
    """A bar per job from ready to its first start, in lanes that never overlap, and a
    counter of the jobs waiting, which reads at a glance when the lanes are many."""
    found = waits(summary)
    lanes = lay_out([(wait.start, wait.end) for wait in found])
    events = [_thread_name(WAITING_PID, lane, f"waiting {lane}") for lane in sorted(set(lanes))]
    changes: list[tuple[float, int]] = []
    for wait, lane in zip(found, lanes, strict=True):
        start = micros(wait.start)
        events.append(
            {
                "ph": "X",
                "name": json_safe(wait.name),
                "cat": "wait",
                "pid": WAITING_PID,
                "tid": lane + TID_OFFSET,
                "ts": start,
                "dur": round(micros(wait.end) - start, 1),
                "args": {"waited_seconds": round(wait.end - wait.start, 3)},
            }
        )
        changes += [(start, 1), (micros(wait.end), -1)]
    waiting = 0
    counts: dict[float, int] = {}  # one sample per moment: the count once all its changes are in
    for moment, change in sorted(changes):
        waiting += change
        counts[moment] = waiting
    events += [
        {"ph": "C", "name": "jobs waiting", "pid": WAITING_PID, "ts": moment, "args": {"jobs": jobs}}
        for moment, jobs in counts.items()
    ]
    return events


def _process_name(pid: int, name: str) -> list[Event]:
    return [
        {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}},
    ]


def _thread_name(pid: int, lane: int, name: str) -> Event:
    tid = lane + TID_OFFSET
    return {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
