"""Runs the recorder on untrusted programs inside the sandbox and turns the result into a trace.

:func:`next_jax.tracing.record_run.record` executes the program, so production paths (the CLI,
TracedTask building, the Beam transform) run it in an isolated child through
``next_jax.execution.sandbox``; only the benchmark and unit tests call it in-process. When the
sandbox gives no result (the child was killed for time, ran out of memory or died), the trace
still comes back, as the program and test with a visible mark on the test's last line and the
matching outcome, so a task is never silently lost.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Iterator, List, Optional, Sequence

from next_jax.execution.sandbox import Limits, SandboxPool, SandboxResult
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.record_run import record

TARGET = "next_jax.tracing.record_run:record_payload"
SANDBOX_GRACE_S = 10.0  # the recorder stops itself (untraced timeout + max_seconds); the sandbox kills later


@dataclasses.dataclass(frozen=True)
class TraceJob:
    """One program run on one test: what the sandboxed recorder receives."""

    program: str
    test: str
    setup_code: str = ""

    def payload(self, config: TraceConfig) -> dict:
        return {"program": self.program, "test": self.test, "setup_code": self.setup_code,
                "config": config.to_dict()}


def sandbox_limits(config: TraceConfig, limits: Optional[Limits] = None) -> Limits:
    """Sandbox limits that leave the recorder time to stop on its own and return its trace."""
    if limits is not None:
        return limits
    budget = (config.timeout_s or 0.0) + config.max_seconds + SANDBOX_GRACE_S
    return Limits(timeout_s=budget, cpu_s=budget)


def result_to_data(job: TraceJob, result: SandboxResult) -> dict:
    """The recorder's data from a sandbox result, or a marked stand-in when there is none."""
    if result.ok and isinstance(result.value, dict):
        return result.value
    if result.status == "timeout":
        outcome, name = "timeout", "__timeout__"
        text = f"killed by the sandbox ({_short(result.detail)})"
    elif result.status == "memory":
        outcome, name, text = "error", "__exception__", "MemoryError()"
    else:
        outcome, name, text = "error", "__untraced__", f"the run died ({_short(result.detail)})"
    shown = text if name == "__exception__" else repr(text)
    line = max(1, len(job.test.rstrip("\n").split("\n")))
    visit = [0, [[name, shown]]]
    return {
        "lines": [[1, line, 1, [visit], visit]],
        "steps": 1,
        "outcome": outcome,
        "exception": shown if name == "__exception__" else None,
        "returns": [],
        "stopped": text if outcome == "timeout" else None,
        "marks": [],
        "stdout_chars": 0,
        "sandbox_status": result.status,
    }


def _short(detail: str, limit: int = 120) -> str:
    detail = " ".join((detail or "").split())
    return detail if len(detail) <= limit else detail[: limit - 3] + "..."


def trace_jobs(
    jobs: Iterable[TraceJob],
    config: TraceConfig = TraceConfig(),
    *,
    pool: Optional[SandboxPool] = None,
    limits: Optional[Limits] = None,
    sandbox: bool = True,
) -> Iterator[dict]:
    """Records every job (in order); in the sandbox unless ``sandbox=False`` (trusted code only)."""
    if not sandbox:
        for job in jobs:
            yield record(job.program, job.test, job.setup_code, config)
        return
    lim = sandbox_limits(config, limits)
    own = pool is None
    if own:
        pool = SandboxPool(workers=1, targets=[TARGET])
    try:
        pending: collections.deque = collections.deque()

        def payloads():
            for job in jobs:
                pending.append(job)
                yield job.payload(config)

        for result in pool.map(TARGET, payloads(), lim):
            yield result_to_data(pending.popleft(), result)
    finally:
        if own:
            pool.close()


def trace_program(
    program: str,
    tests: Sequence[str],
    setup_code: str = "",
    config: TraceConfig = TraceConfig(),
    **kwargs,
) -> List[dict]:
    """Recorder data for ``program`` on each test (see :func:`trace_jobs` for the options)."""
    return list(trace_jobs((TraceJob(program, t, setup_code) for t in tests), config, **kwargs))
