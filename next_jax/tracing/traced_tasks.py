"""RepairTask -> TracedTask: one inline trace of the buggy program per test, in the sandbox.

Every test of ``task.tests`` is traced on ``task.buggy_code`` (after ``task.setup_code``), the
traces are fitted into the optional per-task budget (:mod:`budget`), and the task comes back as
a :class:`TracedTask` whose ``traces[i]`` belongs to ``tests[i]``. :func:`trace_file` does a whole
JSON Lines file with a pool of sandbox workers, writing atomically and logging progress.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, List, Optional

from absl import logging

from next_jax.data.records import AtomicWriter, RepairTask, Trace, TracedTask, read_records
from next_jax.execution.sandbox import Limits, SandboxPool
from next_jax.progress import Progress
from next_jax.tracing.budget import fit_traces
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.sandboxed import TARGET, TraceJob, trace_jobs


def build_traced_task(
    task: RepairTask,
    datas: List[dict],
    config: TraceConfig = TraceConfig(),
    budget: Optional[int] = None,
    count_tokens: Optional[Callable[[str], int]] = None,
) -> TracedTask:
    """Assembles a TracedTask from the recorder data of each of ``task.tests`` (same order)."""
    fitted = fit_traces(task.buggy_code, task.tests, datas, config, budget, count_tokens)
    traces = [
        Trace(test=test, traced_code=text, outcome=data["outcome"], truncated=truncated)
        for test, data, (text, truncated) in zip(task.tests, datas, fitted)
    ]
    return TracedTask.from_repair_task(task, traces)


def trace_tasks(
    tasks: Iterable[RepairTask],
    config: TraceConfig = TraceConfig(),
    *,
    pool: Optional[SandboxPool] = None,
    limits: Optional[Limits] = None,
    budget: Optional[int] = None,
    count_tokens: Optional[Callable[[str], int]] = None,
    sandbox: bool = True,
) -> Iterator[TracedTask]:
    """Traces every test of every task (all tests of all tasks share the pool's workers)."""
    buffered: List[RepairTask] = []

    def jobs():
        for task in tasks:
            buffered.append(task)
            for test in task.tests:
                yield TraceJob(task.buggy_code, test, task.setup_code)

    datas: List[dict] = []
    results = trace_jobs(jobs(), config, pool=pool, limits=limits, sandbox=sandbox)
    for data in results:
        datas.append(data)
        # Tasks with no tests produce no jobs: emit them as soon as they are reached.
        while buffered and len(datas) >= len(buffered[0].tests):
            task = buffered.pop(0)
            n = len(task.tests)
            yield build_traced_task(task, datas[:n], config, budget, count_tokens)
            del datas[:n]
    while buffered:
        task = buffered.pop(0)
        yield build_traced_task(task, [], config, budget, count_tokens)


def trace_file(
    tasks_path: str,
    out_path: str,
    config: TraceConfig = TraceConfig(),
    *,
    workers: int = 1,
    limits: Optional[Limits] = None,
    budget: Optional[int] = None,
    count_tokens: Optional[Callable[[str], int]] = None,
) -> dict:
    """Traces a RepairTask JSON Lines file into a TracedTask file (written atomically).

    The input is validated first, so a bad record fails (naming file:line and field) before any
    work is done. Returns counts: tasks, traces and outcomes.
    """
    tasks = list(read_records(tasks_path, RepairTask))
    total_tests = sum(len(t.tests) for t in tasks)
    logging.info("tracing %d tasks (%d tests) from %s with %d sandbox workers",
                 len(tasks), total_tests, tasks_path, workers)
    counts = {"tasks": 0, "traces": 0, "truncated": 0, "pass": 0, "fail": 0, "error": 0, "timeout": 0}
    start = time.monotonic()
    progress = Progress("trace", total=total_tests, unit="tests")
    with SandboxPool(workers=workers, targets=[TARGET]) as pool, AtomicWriter(out_path) as writer:
        for traced in trace_tasks(tasks, config, pool=pool, limits=limits, budget=budget,
                                  count_tokens=count_tokens):
            writer.write(traced)
            counts["tasks"] += 1
            for trace in traced.traces:
                counts["traces"] += 1
                counts[trace.outcome] += 1
                counts["truncated"] += int(trace.truncated)
            progress.update(len(traced.traces), tasks=counts["tasks"], timeout=counts["timeout"])
    progress.finish()
    counts["seconds"] = round(time.monotonic() - start, 3)
    return counts
