"""Algorithm 1 of NExT as one resumable job: ``run_next`` (``--run_mode=next``).

Layout under ``model_dir`` (every stage directory holds a ``manifest.json``, see ``stages``)::

    iteration_0/select/    n samples per training task from the base model, their verdicts,
                           pass_rates.json and hard.jsonl (D_H, chosen once)
    iteration_i/eval/      dev evaluation of the model of iteration i (i = 0: the base model)
    iteration_i/sample/    N samples per hard problem from the model of iteration i
    iteration_i/check/     their verdicts on the tasks' tests
    iteration_i/build/     B(i): b.jsonl (the accepted pairs, as Samples) and tasks.jsonl
    iteration_i/finetune/  the fine-tune on B(i) (orbax checkpoints, TensorBoard): model i+1
    report.md, report.png, summary.json, next/ (TensorBoard)

Each directory is one stage of the table ``STAGES`` (select, eval, test, sample, check, build,
finetune): a function of the outputs of the stages it names, which ``run_next`` runs once per
iteration, where the stage applies. Iterations run 0..num_iterations-1 and the final model
num_iterations is evaluated too, so
``iterations`` in the result has num_iterations + 1 entries; the best is the one with the highest
dev pass@1 (the ``select_by`` variant). Zero iterations evaluate the base model only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from absl import logging

from next_jax.errors import UserFileNotFoundError, UserValueError
from next_jax import checkpoints, inputs, multihost, partitioning
from next_jax import io as nj_io
from next_jax import tasks as tasks_lib
from next_jax import train as train_lib
from next_jax.data.records import Sample, Verdict, read_all, read_records, read_tasks, tasks_by_id, write_records
from next_jax.evaluation import formats as formats_lib
from next_jax.evaluation.repair import EvalConfig, evaluate_model, headline
from next_jax.evaluation.runs import (ExecutionConfig, SamplingConfig, StepOutput, TaskPrompts, check_file,
                                     read_answered_tasks, sample_tasks)
from next_jax.models.ref import ModelRef
from next_jax.selftrain import building, report as report_lib
from next_jax.selftrain.settings import BuildConfig, FinetuneConfig, SelectionConfig
from next_jax.selftrain.stages import Stage, StageRunner, input_fingerprint, jsonable, read_manifest
from next_jax.selftrain.table import StageImpl, run_iteration


# How the model runs, not what it computes (memory and speed knobs): a resumed run may change them,
# e.g. to fit a different accelerator, without its stages counting as changed.
RUN_ONLY_MODEL_FIELDS = ("max_seq_len", "attention_impl", "attention_chunk_size", "remat_policy", "scan_layers")


def model_record(model) -> object:
    """The model's config as stage manifests record it (without the run-only fields)."""
    record = jsonable(model)
    if isinstance(record, dict):
        record = {k: v for k, v in record.items() if k not in RUN_ONLY_MODEL_FIELDS}
    return record


def _vocabulary_id(vocabulary) -> dict:
    return {"type": type(vocabulary).__name__, "vocab_size": getattr(vocabulary, "vocab_size", None),
            "path": getattr(vocabulary, "tokenizer_path", None)}


def _checkpoint_id(checkpoint: Optional[str], init_seed: int) -> str:
    if checkpoint is None:
        return f"random-init:{init_seed}"
    return "path:" + nj_io.absolute(checkpoint)


@dataclasses.dataclass
class _Context:
    """What every stage of one run shares."""

    model_dir: str
    model: object
    vocabulary: object
    task_feature_lengths: Mapping[str, int]
    fmt: formats_lib.AnswerFormat
    variant: str
    execution: ExecutionConfig
    partitioner: object  # fine-tuning
    sampling_partitioner: object  # sampling (decode favours tensor parallelism, training FSDP)
    init_seed: int
    exemplars: Sequence
    common: dict  # settings every manifest records
    config: Any = None  # the NextConfig of the run
    files: Mapping[str, Optional[str]] = dataclasses.field(default_factory=dict)  # materialized task files
    inputs: Mapping[str, Optional[str]] = dataclasses.field(default_factory=dict)  # their fingerprints
    seeds: Sequence = ()  # the seed set's (task, answer) pairs
    base: Mapping[str, Optional[str]] = dataclasses.field(default_factory=dict)  # the base model

    def stage(self, name: str, settings: dict, inputs: dict) -> Stage:
        return Stage(name=name, directory=nj_io.join(self.model_dir, name),
                     settings=dict(self.common, **settings), inputs=inputs)

    def model_ref(self, checkpoint: Optional[str]) -> ModelRef:
        """The model with ``checkpoint``'s weights, on the sampling mesh."""
        return ModelRef(model=self.model, vocabulary=self.vocabulary, task_feature_lengths=self.task_feature_lengths,
                        checkpoint=checkpoint, init_seed=self.init_seed, partitioner=self.sampling_partitioner)

    def prompts(self, tasks_file: str, use_exemplars: bool) -> TaskPrompts:
        """The run's tasks_file prompts (its format and variant; the exemplars only for the base model)."""
        return TaskPrompts(tasks_file, self.fmt, self.variant, self.exemplars if use_exemplars else ())

    def out(self, iteration: int, name: str) -> StepOutput:
        return StepOutput(self.model_dir, iteration, name)


@dataclasses.dataclass(frozen=True)
class FilesConfig:
    """The task files of a run (TracedTask JSON Lines; any may be a glob over shards).

    dev_file: D_dev, scored on eval_tests after every iteration; train_file: D (needed when there
    are iterations); test_file: another set every iteration is scored on (e.g. HeFix+); seed_file:
    tasks with meta['answer'] (the answer text) added to B(i) when ``BuildConfig.include_seed``;
    exemplars_file: few-shot exemplars (meta['answer']) for the base model, which is prompted with
    them when ``few_shot`` (default: the answer format's own exemplars).
    """

    dev_file: str
    train_file: Optional[str] = None
    test_file: Optional[str] = None
    seed_file: Optional[str] = None
    exemplars_file: Optional[str] = None
    few_shot: bool = True


@dataclasses.dataclass(frozen=True)
class NextConfig:
    """One run of Algorithm 1, each role a config of its own.

    model: the base model (``models.ModelRef``): its checkpoint (None: random init from its
      init_seed), vocabulary, feature lengths, and the mesh it samples on (None: the training mesh).
    files: the task files (``FilesConfig``).
    selection / sampling / build / finetune / evaluation / execution: choosing D_H, sampling each
      iteration, building B(i), fine-tuning, dev (and test) evaluation, the sandbox.
    train_partitioner: the fine-tuning mesh (None: every device, data parallel).
    prompt_variant: 'trace' or 'no_trace' (the ablation: no traces anywhere); answer_format:
      'fenced', or any ``formats.register_format`` name or object; select_by: the evaluated variant
      whose pass@1 picks the best iteration; seed: the run seed; report_examples: examples per
      iteration in report.md; train_fn: the fine-tune function (default ``train.train``; tests).
    """

    model_dir: str
    model: ModelRef
    files: FilesConfig
    num_iterations: int = 2
    prompt_variant: str = "trace"
    answer_format: Union[str, formats_lib.AnswerFormat] = "fenced"
    selection: SelectionConfig = SelectionConfig()
    sampling: SamplingConfig = SamplingConfig()
    build: BuildConfig = BuildConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    evaluation: EvalConfig = EvalConfig()
    execution: ExecutionConfig = ExecutionConfig()
    train_partitioner: Any = None
    select_by: str = "trace"
    seed: int = 0
    report_examples: int = 3
    train_fn: Optional[Callable] = None


def run_next(config: NextConfig) -> dict:
    """Runs (or resumes) Algorithm 1: the table ``STAGES`` once per iteration; returns the
    per-iteration metrics (see ``next_jax.selftrain``)."""
    model_dir, ref, files = config.model_dir, config.model, config.files
    model, vocabulary, task_feature_lengths = ref.model, ref.vocabulary, ref.task_feature_lengths
    base_checkpoint, init_seed = ref.checkpoint, ref.init_seed
    train_file, dev_file, test_file, seed_file = files.train_file, files.dev_file, files.test_file, files.seed_file
    exemplars_file, few_shot = files.exemplars_file, files.few_shot
    num_iterations, prompt_variant, answer_format = config.num_iterations, config.prompt_variant, config.answer_format
    evaluation, execution, select_by = config.evaluation, config.execution, config.select_by
    partitioner, sampling_partitioner = config.train_partitioner, ref.partitioner
    started = time.monotonic()
    if num_iterations < 0:
        raise UserValueError(f"run_next: num_iterations must be >= 0, got {num_iterations}")
    if num_iterations and train_file is None:
        raise UserValueError("run_next: num_iterations > 0 needs a train_file")
    if prompt_variant not in ("trace", "no_trace"):
        raise UserValueError(f"run_next: prompt_variant must be 'trace' or 'no_trace', got {prompt_variant!r}")
    if select_by not in evaluation.variants:
        raise UserValueError(f"run_next: select_by={select_by!r} is not among evaluation.variants {evaluation.variants}")
    fmt = formats_lib.get_format(answer_format)
    if partitioner is None:
        partitioner = partitioning.Partitioner()
    sampling_partitioner = sampling_partitioner or partitioner
    exemplars = _exemplars(fmt, exemplars_file, few_shot)
    train_file, dev_file, test_file = (_materialize(model_dir, name, path) for name, path in
                                       (("train", train_file), ("dev", dev_file), ("test", test_file)))
    base_id = _checkpoint_id(base_checkpoint, init_seed)
    ctx = _Context(
        model_dir=model_dir, model=model, vocabulary=vocabulary, task_feature_lengths=dict(task_feature_lengths),
        fmt=fmt, variant=prompt_variant, execution=execution, partitioner=partitioner,
        sampling_partitioner=sampling_partitioner,
        init_seed=init_seed, exemplars=exemplars,
        common={"model": model_record(model), "vocabulary": _vocabulary_id(vocabulary), "answer_format": fmt.name,
                "task_feature_lengths": dict(task_feature_lengths), "prompt_variant": prompt_variant},
        config=config, files={"train": train_file, "dev": dev_file, "test": test_file},
        inputs={"train": input_fingerprint(train_file), "dev": input_fingerprint(dev_file),
                "test": input_fingerprint(test_file), "exemplars": _exemplars_id(exemplars),
                "seed": input_fingerprint(seed_file)},
        seeds=read_answered_tasks(seed_file) if seed_file else [],
        base={"checkpoint": base_checkpoint, "id": base_id},
    )
    runner = StageRunner()
    outputs: Dict[str, dict] = {"model": dict(ctx.base)}
    iterations: List[dict] = []
    for i in range(num_iterations + 1):
        row = {"iteration": i, "checkpoint": outputs["model"]["checkpoint"]}
        row.update(run_iteration(STAGES, ctx, runner, i, outputs))
        row["dev_pass_at_1"] = headline(row["dev"], select_by)
        if i < num_iterations:
            row["hard"] = outputs["select"]["hard"]
        row["timings_s"] = {name.split("/", 1)[1]: round(s, 2) for name, s in runner.timings.items()
                            if name.startswith(f"iteration_{i}/")}
        iterations.append(row)
        result = _result(iterations, outputs.get("select"), select_by, started)
        if multihost.is_chief():  # the report grows iteration by iteration
            report_lib.write_iteration_scalars(model_dir, row)
            nj_io.write_text(nj_io.join(model_dir, "summary.json"), json.dumps(result, indent=2, sort_keys=True) + "\n")
            report_lib.write_report(model_dir, result, evaluation.ks)
    logging.info("next: dev pass@1 per iteration %s; best iteration %d", result["dev_pass_at_1"],
                 result["best_iteration"])
    return result


def _result(iterations: List[dict], hard: Optional[dict], select_by: str, started: float) -> dict:
    best = max(range(len(iterations)), key=lambda j: (iterations[j]["dev_pass_at_1"], -j))
    return {
        "iterations": iterations,
        "selection": hard,
        "best_iteration": best,
        "best_checkpoint": iterations[best]["checkpoint"],
        "dev_pass_at_1": [row["dev_pass_at_1"] for row in iterations],
        "select_by": select_by,
        "wall_s": round(time.monotonic() - started, 2),
    }


def _materialize(model_dir: str, name: str, path: Optional[str]) -> Optional[str]:
    """A task file as one JSON Lines file: a glob pattern (e.g. a built dataset's shards,
    ``DIR/train-*-of-*.jsonl``) is concatenated in name order into ``MODEL_DIR/data/{name}.jsonl``."""
    if path is None or not any(c in path for c in "*?["):
        return path
    out = nj_io.join(model_dir, "data", f"{name}.jsonl")
    if multihost.is_chief():
        shards = nj_io.glob(path)
        if not shards:
            raise UserFileNotFoundError(f"run_next: {name} files {path!r} match nothing")
        text = "".join(nj_io.read_text(shard).rstrip("\n") + "\n" for shard in shards)
        if not nj_io.exists(out) or nj_io.read_text(out) != text:
            nj_io.write_text(out, text)
    multihost.barrier(f"materialize:{out}")
    return out


def _exemplars(fmt, exemplars_file: Optional[str], few_shot: bool) -> list:
    """The base model's few-shot exemplars: the file's, else the format's own, or none."""
    if not few_shot:
        return []
    if exemplars_file:
        return read_answered_tasks(exemplars_file)
    return list(fmt.default_exemplars()) if fmt.default_exemplars else []


def _exemplars_id(exemplars) -> Optional[str]:
    if not exemplars:
        return None
    text = json.dumps([[task.to_dict(), answer] for task, answer in exemplars], sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# The stages of Algorithm 1, as a table. Each stage is a function of the outputs of the stages it
# names (``upstream``; "model" is the model of the current iteration: the base model, then each
# fine-tune's) and returns its own outputs; ``run_next`` runs the table once per iteration, each
# stage where ``when`` says so. A stage's manifest (settings, inputs) is what makes a rerun skip
# it, resume it, or refuse a changed setting.


def _select(ctx: _Context, runner: StageRunner, i: int, up: Mapping[str, dict]) -> dict:
    """D_H, chosen once from the base model (line 1 of Algorithm 1)."""
    selection, train_file, model = ctx.config.selection, ctx.files["train"], up["model"]
    stage = ctx.stage("iteration_0/select", {"selection": selection, "execution": ctx.execution},
                      {"train": ctx.inputs["train"], "checkpoint": model["id"], "exemplars": ctx.inputs["exemplars"]})
    hard_path = nj_io.join(stage.directory, "hard.jsonl")

    def run():
        tasks = list(read_tasks(train_file)) if multihost.is_chief() else []
        rates = {}
        if selection.threshold is not None:
            samples = sample_tasks(model=ctx.model_ref(model["checkpoint"]), sampling=selection.sampling,
                                   prompts=ctx.prompts(train_file, True), out=ctx.out(0, "select/samples"))
            if multihost.is_chief():
                verdicts = nj_io.join(stage.directory, "verdicts.jsonl")
                check_file({t.task_id: t for t in tasks}, samples, verdicts, execution=ctx.execution,
                           name="select: check")
                rates = building.pass_rates(read_records(verdicts, Verdict))
        if not multihost.is_chief():
            return None
        ids = [t.task_id for t in tasks]
        chosen = set(ids if selection.threshold is None else building.hard_problems(ids, rates, selection.threshold))
        write_records(hard_path, (t for t in tasks if t.task_id in chosen))
        nj_io.write_text(nj_io.join(stage.directory, "pass_rates.json"), json.dumps(rates, sort_keys=True) + "\n")
        solved = [c / n for n, c in rates.values() if n]
        return {"train_tasks": len(ids), "hard": len(chosen), "threshold": selection.threshold,
                "base_train_pass_at_1": sum(solved) / len(solved) if solved else None}

    result = runner.run(stage, run, collective=selection.threshold is not None)
    return dict(result, path=hard_path, key=stage.key)


def _evaluate_on(name: str, subdir: str):
    """The dev (or test) evaluation of the iteration's model."""

    def stage_fn(ctx: _Context, runner: StageRunner, i: int, up: Mapping[str, dict]) -> dict:
        evaluation, model = ctx.config.evaluation, up["model"]
        stage = ctx.stage(f"iteration_{i}/{subdir}", {"evaluation": evaluation, "execution": ctx.execution},
                          {name: ctx.inputs[name], "checkpoint": model["id"],
                           "exemplars": ctx.inputs["exemplars"] if i == 0 else None})
        return runner.run(stage, lambda: evaluate_model(
            model=ctx.model_ref(model["checkpoint"]), prompts=ctx.prompts(ctx.files[name], i == 0),
            settings=evaluation, out=ctx.out(i, subdir), execution=ctx.execution), collective=True)

    return stage_fn


def _sample(ctx: _Context, runner: StageRunner, i: int, up: Mapping[str, dict]) -> dict:
    """N answers per hard problem from the iteration's model."""
    hard, model = up["select"], up["model"]
    stage = ctx.stage(f"iteration_{i}/sample", {"sampling": ctx.config.sampling},
                      {"hard": hard["key"], "checkpoint": model["id"],
                       "exemplars": ctx.inputs["exemplars"] if i == 0 else None})
    runner.run(stage, lambda: {"samples": sample_tasks(
        model=ctx.model_ref(model["checkpoint"]), sampling=ctx.config.sampling,
        prompts=ctx.prompts(hard["path"], i == 0), out=ctx.out(i, "sample/samples"))}, collective=True)
    return {"path": nj_io.join(stage.directory, "samples.jsonl"), "key": stage.key}


def _check(ctx: _Context, runner: StageRunner, i: int, up: Mapping[str, dict]) -> dict:
    """A verdict per sample: its fix against the task's tests, in the sandbox."""
    build, samples = ctx.config.build, up["sample"]
    stage = ctx.stage(f"iteration_{i}/check", {"execution": ctx.execution, "tests_field": build.tests_field},
                      {"samples": samples["key"]})
    verdicts_path = nj_io.join(stage.directory, "verdicts.jsonl")

    def check():
        check_file(tasks_by_id(up["select"]["path"]), samples["path"], verdicts_path, execution=ctx.execution,
                   tests_field=build.tests_field, name=f"iteration {i}: check")
        verdicts = read_all(verdicts_path, Verdict)
        statuses: Dict[str, int] = {}
        for v in verdicts:
            statuses[v.status] = statuses.get(v.status, 0) + 1
        return {"samples": len(verdicts), "passed": statuses.get("pass", 0), "statuses": statuses}

    return dict(runner.run(stage, check), path=verdicts_path, key=stage.key)


def _build(ctx: _Context, runner: StageRunner, i: int, up: Mapping[str, dict]) -> dict:
    """B(i): the accepted (rationale, fix) pairs, deduplicated and capped as BuildConfig says."""
    build, finetune, hard = ctx.config.build, ctx.config.finetune, up["select"]
    samples_path, verdicts_path = up["sample"]["path"], up["check"]["path"]
    train_variant = finetune.train_variant or ctx.variant
    previous_build = nj_io.join(ctx.model_dir, f"iteration_{i - 1}", "build", "b.jsonl") if i else None
    stage = ctx.stage(f"iteration_{i}/build", {"build": build, "train_variant": train_variant},
                      {"verdicts": up["check"]["key"], "seed": ctx.inputs["seed"] if build.include_seed else None,
                       "earlier": runner_key(ctx, i - 1, "build") if build.accumulate and i else None})
    b_path = nj_io.join(stage.directory, "b.jsonl")

    def make_b():
        samples = read_all(samples_path, Sample)
        accepted = building.accepted_pairs(samples, read_all(verdicts_path, Verdict))
        earlier = ([s for s in read_records(previous_build, Sample) if s.model != "seed"]
                   if build.accumulate and previous_build else [])
        seed_pairs = building.seed_samples(ctx.seeds, iteration=i, variant=train_variant)
        training = building.build_training_set(accepted, build, earlier=earlier, seed=seed_pairs)
        hard_tasks = tasks_by_id(hard["path"])
        task_of = dict(hard_tasks, **{t.task_id: t for t, _ in ctx.seeds})
        write_records(b_path, training.pairs)
        needed = dict.fromkeys(s.task_id for s in training.pairs)
        write_records(nj_io.join(stage.directory, "tasks.jsonl"), (task_of[t] for t in needed))
        stats = training.stats(hard["hard"])
        stats["examples"] = report_lib.examples(samples, read_all(verdicts_path, Verdict), hard_tasks,
                                                ctx.config.report_examples)
        return stats

    return {"stats": runner.run(stage, make_b), "path": b_path, "directory": stage.directory, "key": stage.key,
            "train_variant": train_variant}


def _finetune(ctx: _Context, runner: StageRunner, i: int, up: Mapping[str, dict]) -> dict:
    """The next model: the base model (or the previous one) fine-tuned on B(i)."""
    finetune, seed, built, model = ctx.config.finetune, ctx.config.seed, up["build"], up["model"]
    init, init_id = ((model["checkpoint"], model["id"]) if finetune.from_previous
                     else (ctx.base["checkpoint"], ctx.base["id"]))
    stage = ctx.stage(f"iteration_{i}/finetune", {"finetune": finetune, "seed": seed + i},
                      {"b": built["key"], "init": init_id})
    num_steps = finetune.steps_for(built["stats"]["size"])

    def tune():
        if built["stats"]["size"] == 0:
            logging.warning("iteration %d: B(%d) is empty; the next model is the starting model", i, i)
            return {"checkpoint": init, "num_steps": 0, "skipped": "empty B(i)"}

        pairs = [(s.task_id, s.text) for s in read_all(built["path"], Sample)]
        task_name = f"next_selftrain_b_{built['key'].split(':')[1][:16]}"
        tasks_lib.register_repair_task(task_name, split_files={"train": nj_io.join(built["directory"], "tasks.jsonl")},
                                       vocabulary=ctx.vocabulary, variant=built["train_variant"],
                                       answers=lambda split: pairs, prompt_fn=ctx.fmt.prompt)
        start = ModelRef(model=ctx.model, vocabulary=ctx.vocabulary, task_feature_lengths=ctx.task_feature_lengths,
                         checkpoint=init, init_seed=seed + i, partitioner=ctx.partitioner)
        out = _train(ctx, start, task_name=task_name, num_steps=num_steps, model_dir=stage.directory)
        return {"checkpoint": out["checkpoint"], "num_steps": num_steps, "metrics": out.get("metrics", {})}

    tuned = runner.run(stage, tune, collective=True)
    next_id = init_id if tuned.get("skipped") else stage.key
    return {"tuned": tuned, "iteration": i, "model": {"checkpoint": tuned["checkpoint"], "id": next_id}}


def _trains(ctx: _Context, i: int) -> bool:
    return i < ctx.config.num_iterations


STAGES: Dict[str, StageImpl] = {
    "select": StageImpl(_select, lambda ctx, i: i == 0 and ctx.config.num_iterations > 0),
    "eval": StageImpl(_evaluate_on("dev", "eval"), report=lambda out: {"dev": out}),
    "test": StageImpl(_evaluate_on("test", "test"), lambda ctx, i: ctx.files["test"] is not None,
                      report=lambda out: {"test": out}),
    "sample": StageImpl(_sample, _trains),
    "check": StageImpl(_check, _trains, report=lambda out: {"samples": out["samples"], "samples_passed": out["passed"],
                                                            "statuses": out["statuses"]}),
    "build": StageImpl(_build, _trains, report=lambda out: {"build": out["stats"]}),
    "finetune": StageImpl(_finetune, _trains, report=lambda out: {"finetune": out["tuned"]}),
}


def runner_key(ctx: _Context, i: int, name: str) -> Optional[str]:
    """The recorded key of an earlier stage (its manifest), as an input of a later one."""
    manifest = multihost.broadcast_json(
        read_manifest(nj_io.join(ctx.model_dir, f"iteration_{i}", name)) if multihost.is_chief() else None)
    return manifest.get("key") if manifest else None


def _train(ctx: _Context, start: ModelRef, *, task_name: str, num_steps: int, model_dir: str) -> dict:
    """One fine-tune of ``start`` (its checkpoint, or random weights; its init_seed seeds the run; its
    partitioner is the training mesh) on ``task_name``, as ``ctx.config.finetune`` says, through the
    trainer (``next_jax.train.train`` unless ``ctx.config.train_fn`` is given; either takes a
    ``train.TrainConfig``)."""
    finetune, train_fn = ctx.config.finetune, ctx.config.train_fn or train_lib.train
    kwargs = dict(
        model=start.model, train_steps=num_steps, model_dir=model_dir, partitioner=start.partitioner,
        dataset_cfg=inputs.DatasetConfig(task_name=task_name, task_feature_lengths=dict(start.task_feature_lengths),
                                         batch_size=finetune.batch_size, pack=finetune.pack),
        checkpoint_cfg=checkpoints.CheckpointConfig(period=finetune.checkpoint_period, keep=2),
        initial_checkpoint=start.checkpoint, logging_cfg=train_lib.LoggingConfig(summary_period=finetune.summary_period),
        num_microbatches=finetune.num_microbatches, seed=start.init_seed,
    )
    if finetune.optimizer is not None:
        kwargs["optimizer"] = finetune.optimizer
    out = train_fn(train_lib.TrainConfig(**kwargs))
    return {"checkpoint": out.checkpoint, "metrics": jsonable(out.metrics)}

