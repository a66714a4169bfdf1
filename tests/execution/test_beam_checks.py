"""The Beam transform runs the same checks inside a pipeline (FnApiRunner)."""

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from next_jax.data.records import RepairTask, Sample
from next_jax.execution.beam_checks import CheckSamples
from next_jax.execution.checker import CheckConfig

TASKS = [
    RepairTask(task_id="add", source="unit", description="", buggy_code="", entry_point="add",
               tests=["assert add(1, 2) == 3", "assert add(0, 0) == 0"]),
    RepairTask(task_id="neg", source="unit", description="", buggy_code="", entry_point="neg",
               tests=["assert neg(1) == -1"]),
]
FIXES = [
    ("add", "ok", "def add(a, b):\n    return a + b\n", "pass"),
    ("add", "bad", "def add(a, b):\n    return a * b\n", "fail"),
    ("add", "none", None, "no_code"),
    ("neg", "ok", "def neg(x):\n    return -x\n", "pass"),
    ("neg", "exit", "import os\nos._exit(0)\n", "error"),
]


def samples():
    return [Sample(task_id=t, iteration=1, sample_id=f"{t}/{s}", prompt_variant="trace", text="",
                   rationale="", fix=fix) for t, s, fix, _ in FIXES]


EXPECTED = [(f"{t}/{s}", status) for t, s, _, status in FIXES]


def _options():
    return PipelineOptions(["--runner=FnApiRunner"])


def sandbox_workers_of_this_process():
    me, found = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == me and b"next_jax.execution.worker" in cmd:
            found.append(int(pid))
    return found


def test_check_samples_with_tasks_mapping():
    before = set(sandbox_workers_of_this_process())  # e.g. run_isolated's shared pool
    with beam.Pipeline(options=_options()) as p:
        verdicts = (p | beam.Create(samples())
                    | CheckSamples({t.task_id: t for t in TASKS}, workers=1,
                                   options=CheckConfig(test_timeout_s=2.0))
                    | beam.Map(lambda v: (v.sample_id, v.status)))
        assert_that(verdicts, equal_to(EXPECTED))
    assert set(sandbox_workers_of_this_process()) <= before  # DoFn.teardown closed its pool


def test_check_samples_with_tasks_side_input_and_dicts():
    before = set(sandbox_workers_of_this_process())
    with beam.Pipeline(options=_options()) as p:
        tasks = p | "Tasks" >> beam.Create([t.to_dict() for t in TASKS])
        verdicts = (p | "Samples" >> beam.Create([s.to_dict() for s in samples()])
                    | CheckSamples(tasks, workers=1, max_batch_size=2)
                    | beam.Map(lambda v: (v.sample_id, v.status)))
        assert_that(verdicts, equal_to(EXPECTED))
    assert set(sandbox_workers_of_this_process()) <= before
