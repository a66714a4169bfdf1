"""Apache Beam transform that traces RepairTasks into TracedTasks, for big datasets.

Tracing is embarrassingly parallel over tasks: each Beam worker keeps one warm sandbox pool
(created in ``DoFn.setup``, closed in ``teardown``) and traces the tasks it is given. The
DirectRunner runs it here; Dataflow, Flink or Spark run the same pipeline at scale (the sandbox
needs Linux namespaces on the workers, see ``next_jax.execution.sandbox``).

``count_tokens`` (for a token budget) must pickle, since Beam ships the DoFn to its workers.
"""

from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import apache_beam as beam

from next_jax.data.records import RepairTask, TracedTask, read_records
from next_jax.execution.sandbox import Limits, SandboxPool
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.traced_tasks import trace_tasks
from next_jax.tracing.sandboxed import TARGET


class _TraceDoFn(beam.DoFn):
    def __init__(self, config: TraceConfig, budget, count_tokens, limits, workers: int):
        self.config = config
        self.budget = budget
        self.count_tokens = count_tokens
        self.limits = limits
        self.workers = workers
        self.pool = None

    def setup(self):
        self.pool = SandboxPool(workers=self.workers, targets=[TARGET])

    def process(self, task: RepairTask):
        yield from trace_tasks([task], self.config, pool=self.pool, limits=self.limits,
                               budget=self.budget, count_tokens=self.count_tokens)

    def teardown(self):
        if self.pool is not None:
            self.pool.close()
            self.pool = None


class TraceTasks(beam.PTransform):
    """PCollection[RepairTask] -> PCollection[TracedTask] (one trace per test, in the sandbox)."""

    def __init__(self, config: TraceConfig = TraceConfig(), *, budget: Optional[int] = None,
                 count_tokens: Optional[Callable[[str], int]] = None,
                 limits: Optional[Limits] = None, workers_per_dofn: int = 1):
        super().__init__()
        self._fn = _TraceDoFn(config, budget, count_tokens, limits, workers_per_dofn)

    def expand(self, tasks):
        return tasks | "Trace" >> beam.ParDo(self._fn)


def trace_file_with_beam(tasks_path: str, out_path: str, config: TraceConfig = TraceConfig(), *,
                 budget: Optional[int] = None,
                 pipeline_args: Sequence[str] = ("--runner=DirectRunner",),
                 limits: Optional[Limits] = None, num_shards: int = 1) -> int:
    """Traces a RepairTask file into ``out_path`` (TracedTask JSON Lines, in no particular order).

    The input is validated up front (errors name file:line and field, before any work); Beam
    writes through its own temporary files, so ``out_path`` (or its shards, when ``num_shards``
    is not 1) appears only when the pipeline finishes. Returns the number of tasks.
    """
    count = sum(1 for _ in read_records(tasks_path, RepairTask))
    options = beam.options.pipeline_options.PipelineOptions(list(pipeline_args))
    template = "" if num_shards == 1 else None
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | "Read" >> beam.io.ReadFromText(tasks_path)
            | "NonBlank" >> beam.Filter(lambda line: bool(line.strip()))
            | "Parse" >> beam.Map(lambda line: RepairTask.from_dict(json.loads(line)))
            | "Reshuffle" >> beam.Reshuffle()
            | TraceTasks(config, budget=budget, limits=limits)
            | "ToJson" >> beam.Map(lambda task: task.to_json())
            | "Write" >> beam.io.WriteToText(out_path, shard_name_template=template,
                                            num_shards=num_shards)
        )
    return count


def parse_traced(line: str) -> TracedTask:
    """Reads back one output line (for tests and downstream stages)."""
    return TracedTask.from_dict(json.loads(line))
