"""Apache Beam: the same checks as ``check.py``, spread over a pipeline's workers.

    verdicts = samples | CheckSamples(tasks, workers=2)

``samples`` is a PCollection of ``Sample`` records (or their dicts); ``tasks`` is either a
mapping task_id -> RepairTask (shipped with the DoFn) or a PCollection of RepairTask records
(used as a side input, for task sets too big to pickle into the graph). The output is a
PCollection of ``Verdict`` records, one per sample. ``hide`` lists files/directories (datasets
with expected outputs) the checked programs must not read.

Each DoFn instance owns one ``SandboxPool`` (started in ``setup``, closed in ``teardown``), and
samples are batched (``BatchElements``) so the pool's workers stay busy within a bundle. On a
cluster, give each Beam worker as many sandbox workers as it has cores and one Beam thread per
machine (e.g. Dataflow ``--number_of_worker_harness_threads=1``), since the sandboxes, not the
DoFn threads, use the CPUs.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import apache_beam as beam

from next_jax.data.records import RepairTask, Sample, TracedTask, Verdict
from next_jax.execution.checker import Checker, CheckConfig
from next_jax.execution.sandbox import DEFAULT_PRELOAD, SandboxPool


def _as_sample(x: Any) -> Sample:
    return x if isinstance(x, Sample) else Sample.from_dict(x, where="beam element")


def _as_task(x: Any) -> RepairTask:
    if isinstance(x, RepairTask):
        return x
    cls = TracedTask if isinstance(x, Mapping) and "traces" in x else RepairTask
    return cls.from_dict(x, where="beam task")


class CheckSamplesFn(beam.DoFn):
    """Checks a batch (list) of samples; yields one Verdict per sample."""

    def __init__(self, tasks: Optional[Mapping[str, Any]] = None, *, workers: int = 1,
                 options: CheckConfig = CheckConfig(), preload=(), hide=()):
        self._tasks = None if tasks is None else {k: _as_task(v) for k, v in tasks.items()}
        self._workers = workers
        self._options = options
        self._preload = tuple(preload)
        self._hide = tuple(hide)
        self._pool: Optional[SandboxPool] = None
        self._checker: Optional[Checker] = None

    def setup(self):
        self._pool = SandboxPool(self._workers, preload=tuple(DEFAULT_PRELOAD) + self._preload,
                                 hide=self._hide)
        self._checker = Checker(self._pool, options=self._options, modules=self._preload)
        self._side_cache = (None, None)

    def process(self, batch, side_tasks=None):
        tasks = self._tasks
        if side_tasks is not None:
            if self._side_cache[0] is not side_tasks:  # convert a side input once per bundle
                self._side_cache = (side_tasks, {k: _as_task(v) for k, v in side_tasks.items()})
            tasks = self._side_cache[1]
        yield from self._checker.check(tasks, [_as_sample(x) for x in batch])

    def teardown(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class CheckSamples(beam.PTransform):
    """Samples -> Verdicts (see the module doc)."""

    def __init__(self, tasks, *, workers: int = 1, options: CheckConfig = CheckConfig(),
                 max_batch_size: int = 256, preload=(), hide=()):
        super().__init__()
        self._hide = tuple(hide)
        self._tasks = tasks
        self._workers = workers
        self._options = options
        self._max_batch_size = max_batch_size
        self._preload = tuple(preload)

    def expand(self, samples):
        batches = samples | "Batch" >> beam.BatchElements(min_batch_size=1,
                                                          max_batch_size=self._max_batch_size)
        if isinstance(self._tasks, beam.pvalue.PCollection):
            by_id = self._tasks | "KeyTasks" >> beam.Map(
                lambda t: ((t.task_id if isinstance(t, RepairTask) else t["task_id"]), t))
            fn = CheckSamplesFn(None, workers=self._workers, options=self._options,
                                preload=self._preload, hide=self._hide)
            return batches | "Check" >> beam.ParDo(fn, beam.pvalue.AsDict(by_id))
        fn = CheckSamplesFn(dict(self._tasks), workers=self._workers, options=self._options,
                            preload=self._preload, hide=self._hide)
        return batches | "Check" >> beam.ParDo(fn)
