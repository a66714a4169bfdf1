"""CLI: check samples' fixes against their tasks' tests, one Verdict per sample.

    python -m next_jax.execution --tasks TASKS.jsonl --samples SAMPLES.jsonl \\
        --out VERDICTS.jsonl [--workers N] [--test_timeout_s 3] [--memory_mb 2048] \\
        [--tests tests|eval_tests] [--strict_types] [--preload numpy] [--hide DATA_DIR]

TASKS holds RepairTask (or TracedTask) records, SAMPLES holds Sample records. The verdicts are
written in the order of SAMPLES, through a temporary file renamed at the end, so an interrupted
run leaves no partial output. Exit code 0 when every sample got a verdict, whatever the
verdicts; bad input (a malformed record, a sample whose task_id is not in TASKS, a duplicate
task_id) stops the run with an error naming the file, line and field.
"""

from __future__ import annotations

import sys
from typing import Dict, Iterator

from absl import app, flags, logging

from next_jax import io as nj_io
from next_jax.data import records
from next_jax.data.records import AtomicWriter, RecordError, RepairTask, Sample, tasks_by_id
from next_jax.progress import Progress
from next_jax.execution.checker import Checker, CheckConfig
from next_jax.execution.sandbox import DEFAULT_PRELOAD, SandboxPool
from next_jax import startup_log

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The binary's flags, defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("tasks", None, "JSON Lines file of RepairTask or TracedTask records.")
    flags.DEFINE_string("samples", None, "JSON Lines file of Sample records.")
    flags.DEFINE_string("out", None, "Where to write the Verdict records (JSON Lines).")
    flags.DEFINE_integer("workers", None, "Sandbox worker processes (default: CPU count).")
    flags.DEFINE_float("test_timeout_s", 3.0, "Wall-clock limit for the program and for each test.")
    flags.DEFINE_integer("memory_mb", 2048, "Address-space limit of each checked program, in MiB.")
    flags.DEFINE_enum("tests", "tests", ["tests", "eval_tests"], "Which of the task's test lists to run.")
    flags.DEFINE_bool("strict_types", False, "Require identical types in == (1 != 1.0 != True).")
    flags.DEFINE_list("preload", [], "Extra modules the workers import before forking (e.g. numpy); "
                      "the only third-party packages checked programs and tests can import.")
    flags.DEFINE_list("hide", [], "Files or directories checked programs must not read (datasets with "
                      "expected outputs); the tasks file is always hidden.")



def read_samples(path: str, tasks: Dict[str, RepairTask]) -> Iterator[Sample]:
    for where, obj in records.read_json_lines(path):
        sample = Sample.from_dict(obj, where=where)
        if sample.task_id not in tasks:
            raise RecordError(f"{sample.task_id!r} is not a task in the tasks file", where=where,
                              field="task_id")
        yield sample


def _count_lines(path: str) -> int:
    with nj_io.open_file(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def run(tasks_path: str, samples_path: str, out_path: str, *, workers=None,
        options: CheckConfig = CheckConfig(), preload=(), hide=()) -> dict:
    records.require_records(tasks_path, "tasks file", "give --tasks a RepairTask or TracedTask JSON Lines file")
    tasks = tasks_by_id(tasks_path)
    progress = Progress("check", total=_count_lines(samples_path), unit="samples")
    logging.info("checking against %d tasks (%s)", len(tasks), options)
    counts: Dict[str, int] = {}
    with SandboxPool(workers, preload=tuple(DEFAULT_PRELOAD) + tuple(preload),
                     hide=[tasks_path, *hide]) as pool, \
            Checker(pool, options=options, modules=preload) as checker, \
            AtomicWriter(out_path) as writer:
        for verdict in checker.check(tasks, read_samples(samples_path, tasks)):
            writer.write(verdict)
            counts[verdict.status] = counts.get(verdict.status, 0) + 1
            progress.update(1, **counts)
    progress.finish()
    logging.info("wrote %d verdicts to %s: %s", writer.count, out_path, counts)
    return counts


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("tasks", "samples", "out"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    options = CheckConfig(test_timeout_s=FLAGS.test_timeout_s, memory_bytes=FLAGS.memory_mb << 20,
                           tests_field=FLAGS.tests, strict_types=FLAGS.strict_types)
    try:
        run(FLAGS.tasks, FLAGS.samples, FLAGS.out, workers=FLAGS.workers, options=options,
            preload=FLAGS.preload, hide=FLAGS.hide)
    except (RecordError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    startup_log.quiet_startup()  # first: TensorFlow's native libraries and Beam print warnings as they load
    define_flags()
    app.run(main)
