"""A fake executor for scheduler tests: no processes, just recorded greenlet sleeps."""

from __future__ import annotations

from orchestrator.engine import Engine, EngineConfig
from orchestrator.graph import Plan
from orchestrator.listeners import RunListener
from orchestrator.model import Job
from orchestrator.options import FailurePolicy
from orchestrator.process import ProcessResult


class FakeExecutor:
    """Each job 'runs' for `durations[name]` seconds and exits with `codes[name]`
    (a list gives one code per attempt). Records the order and the most at once."""

    def __init__(self, durations=None, codes=None, default_duration=0.01):
        self.durations = durations or {}
        self.codes = codes or {}
        self.default_duration = default_duration
        self.running: set[str] = set()
        self.peak = 0
        self.started: list[str] = []
        self.attempts: list[tuple[str, int]] = []
        self.resource_peak: dict[str, int] = {}
        self.in_use: dict[str, int] = {}

    def run_attempt(self, job: Job, attempt, env, log_path, stop, on_output) -> ProcessResult:
        self.started.append(job.name)
        self.attempts.append((job.name, attempt))
        self.running.add(job.name)
        self.peak = max(self.peak, len(self.running))
        for name, units in job.resources.items():
            self.in_use[name] = self.in_use.get(name, 0) + units
            self.resource_peak[name] = max(self.resource_peak.get(name, 0), self.in_use[name])
        try:
            if stop.wait(self.durations.get(job.name, self.default_duration)):
                return ProcessResult(signal=15, stopped=True)
            code = self.codes.get(job.name, 0)
            if isinstance(code, list):
                code = code[min(attempt, len(code)) - 1]
            return ProcessResult(exit_code=code, tail=f"{job.name} says {code}\n".encode())
        finally:
            self.running.discard(job.name)
            for name, units in job.resources.items():
                self.in_use[name] -= units

    def close(self):
        pass


def jobs_of(*jobs: Job) -> dict[str, Job]:
    return {job.name: job for job in jobs}


def make_engine(
    jobs,
    executor,
    jobs_limit=4,
    policy="stop",
    capacities=None,
    timeout=None,
    listener=None,
    slots=None,
    **config_fields,
):
    """An engine over all of `jobs` with `executor`; `policy` as the command line spells it;
    `config_fields` are further EngineConfig fields (schedule, expected_durations, ...)."""
    config = EngineConfig(
        run_id="test",
        jobs=jobs_limit,
        policy=FailurePolicy(policy),
        timeout=timeout,
        capacities=capacities or {},
        **({"slots": slots} if slots is not None else {}),
        **config_fields,
    )
    return Engine(Plan(jobs, list(jobs)), executor, listener or RunListener(), config)
