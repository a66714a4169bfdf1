"""NExT's evaluation of one model on a repair task file.

- pass@k for every k in ``ks`` (the unbiased estimator, from N samples per task), with traces in
  the prompt and without them (the ``no_trace`` variant: the model was trained with traces and is
  asked to repair without);
- greedy pass@1 (one sample at temperature 0) for each variant;
- the proxy-based rationale evaluation: a second, fixed model gets each sampled rationale in the
  proxy prompt (spec, buggy code, tests, the rationale; no trace) and writes only the fix; the
  proxy's pass@k over a task's rationales scores how useful the rationales are, independent of the
  evaluated model's own code.

Fixes are judged on ``eval_tests`` by default (e.g. EvalPlus's larger suites), the tests the model
never saw. Outputs go under ``MODEL_DIR/iteration_{i}/{subdir}/``: ``{variant}.samples.jsonl``,
``{variant}.verdicts.jsonl``, the greedy and proxy files, and ``metrics.json``. Each file is
resumable (see ``evaluation.runs``), so a killed evaluation continues where it stopped.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from next_jax import checkpoints, multihost
from next_jax import io as nj_io
from next_jax import trainer as trainer_lib
from next_jax.data.records import RepairTask, Sample, Verdict, read_records, tasks_by_id, write_records
from next_jax.decoding import SamplingConfig
from next_jax.evaluation import formats as formats_lib
from next_jax.evaluation import metrics
from next_jax.evaluation.runs import ExecutionConfig, StepOutput, TaskPrompts, check_file, sample_tasks
from next_jax.models.ref import ModelRef


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """The proxy model that turns a rationale into a fix, and how it samples.

    ``sampling`` defaults to one greedy fix per rationale, so the proxy's pass@k is over the
    evaluated model's rationales only.
    """

    model: Any
    vocabulary: Any
    checkpoint: Optional[str] = None
    sampling: SamplingConfig = SamplingConfig(num_samples=1, temperature=0.0, max_new_tokens=256)
    rationales_of: str = "trace"  # which variant's rationales are scored
    init_seed: int = 0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate; see the module docstring."""

    sampling: SamplingConfig = SamplingConfig()
    variants: Tuple[str, ...] = ("trace", "no_trace")
    greedy: bool = True
    ks: Tuple[int, ...] = (1, 5, 10, 25)
    tests_field: str = "eval_tests"
    proxy: Optional[ProxyConfig] = None

    def __post_init__(self):
        for variant in self.variants:
            if variant not in ("trace", "no_trace"):
                raise ValueError(f"EvalConfig.variants: {variant!r} is not 'trace' or 'no_trace'")
        if not self.variants:
            raise ValueError("EvalConfig.variants is empty")


def _summary(tasks, verdicts_path: str, ks) -> dict:
    return metrics.summarize_verdicts(read_records(verdicts_path, Verdict), ks, all_task_ids=tasks)


def _proxy_records(tasks: Mapping[str, RepairTask], samples_path: str) -> list:
    """One task per rationale: the original task under the sample's id, the rationale in meta."""
    records = []
    for sample in read_records(samples_path, Sample):
        task = tasks[sample.task_id]
        fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(RepairTask)}
        fields.update(task_id=sample.sample_id,
                      meta=dict(task.meta, proxy_rationale=sample.rationale, proxy_of=sample.task_id))
        records.append(RepairTask(**fields))
    return records


def proxy_pass_at_k(proxy_of: Mapping[str, str], verdicts, ks) -> dict:
    """pass@k over each original task's rationales (a rationale passes when its proxy fix does)."""
    counts = collections.defaultdict(lambda: [0, 0])
    for verdict in verdicts:
        task_id = proxy_of[verdict.task_id]
        counts[task_id][0] += 1
        counts[task_id][1] += int(verdict.passed)
    out = metrics.pass_at_k({t: tuple(nc) for t, nc in counts.items()}, ks)
    out["rationales"] = sum(n for n, _ in counts.values())
    out["rationales_passing"] = sum(c for _, c in counts.values())
    return out


def evaluate_model(*, model: ModelRef, prompts: TaskPrompts, settings: EvalConfig, out: StepOutput,
                   execution: ExecutionConfig = ExecutionConfig()) -> dict:
    """Evaluates one model on ``prompts.tasks_file`` (each of ``settings.variants`` replaces
    ``prompts.variant``); returns the metrics and writes them to ``out.path/metrics.json``. Collective."""
    tasks = tasks_by_id(prompts.tasks_file) if multihost.is_chief() else {}
    runs = [(variant, settings.sampling, variant) for variant in settings.variants]
    if settings.greedy:
        runs += [(variant, settings.sampling.greedy(), f"{variant}.greedy") for variant in settings.variants]
    result: dict = {"tasks": None, "greedy": {}}
    samples_of = {}
    for variant, sampling, name in runs:
        samples = sample_tasks(model=model, sampling=sampling, prompts=prompts.replace(variant=variant),
                               out=out.child(f"{name}.samples"))
        samples_of[name] = samples
        summary = None
        if multihost.is_chief():
            verdicts = samples[: -len(".samples.jsonl")] + ".verdicts.jsonl"
            check_file(tasks, samples, verdicts, execution=execution, tests_field=settings.tests_field,
                       name=f"check {out.name}/{name}")
            summary = _summary(tasks, verdicts, settings.ks)
        summary = multihost.broadcast_json(summary)
        if name.endswith(".greedy"):
            result["greedy"][variant] = summary.get("pass@1", 0.0)
        else:
            result[variant] = summary
            result["tasks"] = summary["tasks"]
    if settings.proxy is not None:
        if settings.proxy.rationales_of not in samples_of:
            raise ValueError(f"ProxyConfig.rationales_of={settings.proxy.rationales_of!r} is not among the "
                             f"evaluated variants {settings.variants}")
        result["proxy"] = _proxy_eval(settings, evaluated=model, prompts=prompts, out=out, execution=execution)
    if multihost.is_chief():
        nj_io.write_text(nj_io.join(out.path, "metrics.json"), json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _proxy_eval(settings: EvalConfig, *, evaluated: ModelRef, prompts: TaskPrompts, out: StepOutput,
                execution: ExecutionConfig) -> dict:
    """Proxy pass@k: the proxy model writes a fix from each rationale that ``evaluate_model`` sampled
    in variant ``settings.proxy.rationales_of`` (under ``out``)."""
    proxy, fmt = settings.proxy, prompts.fmt
    rationales = out.child(f"{proxy.rationales_of}.samples").path + ".jsonl"
    records_path = nj_io.join(out.path, "proxy.tasks.jsonl")
    if multihost.is_chief() and not nj_io.exists(records_path):
        write_records(records_path, _proxy_records(tasks_by_id(prompts.tasks_file), rationales))
    multihost.barrier(f"proxy-tasks:{records_path}")
    proxy_format = dataclasses.replace(
        fmt, name=f"{fmt.name}.proxy",
        prompt=lambda task, variant, exemplars: fmt.proxy_prompt(task, task.meta["proxy_rationale"]),
        parse=lambda text, task: (task.meta["proxy_rationale"], fmt.proxy_parse(text, task)))
    samples = sample_tasks(
        model=evaluated.replace(model=proxy.model, vocabulary=proxy.vocabulary, checkpoint=proxy.checkpoint,
                                init_seed=proxy.init_seed),
        sampling=proxy.sampling, prompts=TaskPrompts(records_path, proxy_format, variant="proxy"),
        out=out.child("proxy.samples"))
    summary = None
    if multihost.is_chief():
        proxy_tasks = tasks_by_id(records_path)
        verdicts = nj_io.join(out.path, "proxy.verdicts.jsonl")
        check_file(proxy_tasks, samples, verdicts, execution=execution, tests_field=settings.tests_field,
                   name=f"check {out.name}/proxy")
        proxy_of = {task_id: task.meta["proxy_of"] for task_id, task in proxy_tasks.items()}
        summary = proxy_pass_at_k(proxy_of, read_records(verdicts, Verdict), settings.ks)
    return multihost.broadcast_json(summary)


def headline(result: Mapping[str, Any], variant: str = "trace", k: int = 1) -> float:
    """pass@k of ``variant`` from an ``evaluate_model`` result (0 when it was not computed)."""
    return float(result.get(variant, {}).get(f"pass@{k}", 0.0))




def flat_metrics(result: Mapping[str, Any], prefix: str = "next/") -> dict:
    """An ``evaluate_model`` result as flat scalars: next/trace/pass@1, next/greedy/trace, ..."""
    out = {}
    for variant in ("trace", "no_trace"):
        for key, value in (result.get(variant) or {}).items():
            if key.startswith("pass@"):
                out[f"{prefix}{variant}/{key}"] = value
    for variant, value in (result.get("greedy") or {}).items():
        out[f"{prefix}greedy/{variant}"] = value
    for key, value in (result.get("proxy") or {}).items():
        if key.startswith("pass@"):
            out[f"{prefix}proxy/{key}"] = value
    return out


@dataclasses.dataclass
class RepairEvaluator:
    """NExT's evaluation as an evaluator of ``next_jax.checkpoint_eval.evaluate`` (``--run_mode=eval``).

    ``evaluate`` calls ``evaluator(params, step)`` for each checkpoint it scores; this one samples
    from that checkpoint (``MODEL_DIR/checkpoints/STEP``, or ``checkpoint`` when one is given)
    and returns pass@k with and without traces, greedy pass@1 and proxy pass@k as flat scalars,
    also written to TensorBoard beside ``evaluate``'s own (``MODEL_DIR/eval_checkpoints``, tags
    ``repair/<tasks file name>/...``). Bind it in gin::

        checkpoint_eval.CheckpointEvalConfig.evaluators = [@repair.RepairEvaluator()]
        repair.RepairEvaluator:
          model = %MODEL
          vocabulary = %VOCABULARY
          tasks_file = '/data/mbpp_r/dev.jsonl'
          model_dir = %MODEL_DIR
          task_feature_lengths = %TASK_FEATURE_LENGTHS
          settings = @repair.EvalConfig()
    """

    model: Any
    vocabulary: Any
    tasks_file: str
    model_dir: str
    task_feature_lengths: Mapping[str, int]
    settings: EvalConfig = EvalConfig()
    checkpoint: Optional[str] = None
    answer_format: Union[str, formats_lib.AnswerFormat] = "fenced"
    exemplars: Sequence[Tuple[RepairTask, str]] = ()
    execution: ExecutionConfig = ExecutionConfig()
    partitioner: Any = None
    write_summaries: bool = True

    def __call__(self, params, step: int) -> dict:
        del params  # the sampler loads the checkpoint itself (sharded for sampling)
        checkpoint = self.checkpoint or nj_io.join(checkpoints.checkpoint_dir(self.model_dir), str(step))
        result = evaluate_model(
            model=ModelRef(model=self.model, vocabulary=self.vocabulary, checkpoint=checkpoint,
                           task_feature_lengths=self.task_feature_lengths, partitioner=self.partitioner),
            prompts=TaskPrompts(self.tasks_file, self.answer_format, exemplars=self.exemplars),
            settings=self.settings, out=StepOutput(self.model_dir, int(step), "next_eval"), execution=self.execution)
        values = flat_metrics(result)
        if self.write_summaries and multihost.is_chief():
            # The standalone evaluation's TensorBoard run, tags naming the tasks scored.
            writer = trainer_lib.metric_writer(self.model_dir, trainer_lib.tensorboard_run(self.checkpoint))
            data = nj_io.basename(self.tasks_file)
            writer.write_scalars(int(step), {f"repair/{data}/{k}": v for k, v in values.items()})
            writer.close()
        return values
