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

Iterations run 0..num_iterations-1 and the final model num_iterations is evaluated too, so
``iterations`` in the result has num_iterations + 1 entries; the best is the one with the highest
dev pass@1 (the ``select_by`` variant). Zero iterations evaluate the base model only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from absl import logging

from next_jax import io
from next_jax.errors import UserFileNotFoundError, UserValueError
from next_jax.data.records import Sample, Verdict, read_all, read_records, read_tasks, write_records
from next_jax.evaluation import formats as formats_lib
from next_jax.evaluation.repair import EvalSettings, evaluate_model, headline
from next_jax.evaluation.runs import (ExecutionSettings, SamplingSettings, check_file, read_answered_tasks,
                                      sample_tasks, tasks_by_id)
from next_jax.selftrain import building, multihost, report as report_lib
from next_jax.selftrain.settings import BuildSettings, FinetuneSettings, SelectionSettings
from next_jax.selftrain.stages import Stage, StageRunner, input_fingerprint, jsonable


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
    return "path:" + io.absolute(checkpoint)


@dataclasses.dataclass
class _Context:
    """What every stage of one run shares."""

    model_dir: str
    model: object
    vocabulary: object
    task_feature_lengths: Mapping[str, int]
    fmt: formats_lib.AnswerFormat
    variant: str
    execution: ExecutionSettings
    partitioner: object  # fine-tuning
    sampling_partitioner: object  # sampling (decode favours tensor parallelism, training FSDP)
    init_seed: int
    exemplars: Sequence
    common: dict  # settings every manifest records

    def stage(self, name: str, settings: dict, inputs: dict) -> Stage:
        return Stage(name=name, directory=io.join(self.model_dir, name),
                     settings=dict(self.common, **settings), inputs=inputs)

    def sampler_args(self, checkpoint: Optional[str], use_exemplars: bool) -> dict:
        return dict(model=self.model, vocabulary=self.vocabulary, checkpoint=checkpoint, prompt_fn=self.fmt.prompt,
                    parse_fn=self.fmt.parse, task_feature_lengths=self.task_feature_lengths,
                    model_dir=self.model_dir, exemplars=self.exemplars if use_exemplars else (),
                    partitioner=self.sampling_partitioner, init_seed=self.init_seed)


def run_next(
    *,
    model_dir: str,
    model,
    vocabulary,
    dev_file: str,
    task_feature_lengths: Mapping[str, int],
    train_file: Optional[str] = None,
    test_file: Optional[str] = None,
    base_checkpoint: Optional[str] = None,
    init_seed: int = 0,
    num_iterations: int = 2,
    prompt_variant: str = "trace",
    answer_format: Union[str, formats_lib.AnswerFormat] = "fenced",
    exemplars_file: Optional[str] = None,
    few_shot: bool = True,
    seed_file: Optional[str] = None,
    selection: SelectionSettings = SelectionSettings(),
    sampling: SamplingSettings = SamplingSettings(),
    build: BuildSettings = BuildSettings(),
    finetune: FinetuneSettings = FinetuneSettings(),
    evaluation: EvalSettings = EvalSettings(),
    execution: ExecutionSettings = ExecutionSettings(),
    partitioner=None,
    sampling_partitioner=None,
    select_by: str = "trace",
    seed: int = 0,
    report_examples: int = 3,
    train_fn: Optional[Callable] = None,
) -> dict:
    """Runs (or resumes) Algorithm 1; returns the per-iteration metrics (see ``next_jax.selftrain``)."""
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
        from next_jax import partitioning

        partitioner = partitioning.Partitioner()
    sampling_partitioner = sampling_partitioner or partitioner
    exemplars = _exemplars(fmt, exemplars_file, few_shot)
    train_file, dev_file, test_file = (_materialize(model_dir, name, path) for name, path in
                                       (("train", train_file), ("dev", dev_file), ("test", test_file)))
    ctx = _Context(
        model_dir=model_dir, model=model, vocabulary=vocabulary, task_feature_lengths=dict(task_feature_lengths),
        fmt=fmt, variant=prompt_variant, execution=execution, partitioner=partitioner,
        sampling_partitioner=sampling_partitioner,
        init_seed=init_seed, exemplars=exemplars,
        common={"model": model_record(model), "vocabulary": _vocabulary_id(vocabulary), "answer_format": fmt.name,
                "task_feature_lengths": dict(task_feature_lengths), "prompt_variant": prompt_variant},
    )
    runner = StageRunner()
    inputs = {"train": input_fingerprint(train_file), "dev": input_fingerprint(dev_file),
              "test": input_fingerprint(test_file),
              "exemplars": _exemplars_id(exemplars), "seed": input_fingerprint(seed_file)}
    base_id = _checkpoint_id(base_checkpoint, init_seed)
    hard = _select(ctx, runner, train_file, base_checkpoint, base_id, selection, inputs) if num_iterations else None
    seeds = read_answered_tasks(seed_file) if seed_file else []

    checkpoint, checkpoint_id = base_checkpoint, base_id
    iterations: List[dict] = []
    for i in range(num_iterations + 1):
        row = {"iteration": i, "checkpoint": checkpoint}
        eval_stage = ctx.stage(f"iteration_{i}/eval", {"evaluation": evaluation, "execution": execution},
                               {"dev": inputs["dev"], "checkpoint": checkpoint_id,
                                "exemplars": inputs["exemplars"] if i == 0 else None})
        row["dev"] = runner.run(eval_stage, lambda: evaluate_model(
            model=model, vocabulary=vocabulary, checkpoint=checkpoint, tasks_file=dev_file, settings=evaluation,
            task_feature_lengths=ctx.task_feature_lengths, model_dir=model_dir, iteration=i, subdir="eval",
            answer_format=fmt, exemplars=exemplars if i == 0 else (), execution=execution,
            partitioner=sampling_partitioner, init_seed=init_seed), collective=True)
        row["dev_pass_at_1"] = headline(row["dev"], select_by)
        if test_file is not None:
            test_stage = ctx.stage(f"iteration_{i}/test", {"evaluation": evaluation, "execution": execution},
                                   {"test": inputs["test"], "checkpoint": checkpoint_id,
                                    "exemplars": inputs["exemplars"] if i == 0 else None})
            row["test"] = runner.run(test_stage, lambda: evaluate_model(
                model=model, vocabulary=vocabulary, checkpoint=checkpoint, tasks_file=test_file,
                settings=evaluation, task_feature_lengths=ctx.task_feature_lengths, model_dir=model_dir,
                iteration=i, subdir="test", answer_format=fmt, exemplars=exemplars if i == 0 else (),
                execution=execution, partitioner=sampling_partitioner, init_seed=init_seed), collective=True)
        if i < num_iterations:
            row["hard"] = hard["hard"]
            trained = _iteration(ctx, runner, i, checkpoint, checkpoint_id, base_checkpoint, base_id, hard,
                                 sampling, build, finetune, seeds, inputs, seed, report_examples, train_fn)
            row.update(trained["row"])
            checkpoint, checkpoint_id = trained["checkpoint"], trained["checkpoint_id"]
        row["timings_s"] = {name.split("/", 1)[1]: round(s, 2) for name, s in runner.timings.items()
                            if name.startswith(f"iteration_{i}/")}
        iterations.append(row)
        result = _result(iterations, hard, select_by, started)
        if multihost.is_chief():  # the report grows iteration by iteration
            report_lib.write_iteration_scalars(model_dir, row)
            io.write_text(io.join(model_dir, "summary.json"), json.dumps(result, indent=2, sort_keys=True) + "\n")
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
    out = io.join(model_dir, "data", f"{name}.jsonl")
    if multihost.is_chief():
        shards = io.glob(path)
        if not shards:
            raise UserFileNotFoundError(f"run_next: {name} files {path!r} match nothing")
        text = "".join(io.read_text(shard).rstrip("\n") + "\n" for shard in shards)
        if not io.exists(out) or io.read_text(out) != text:
            io.write_text(out, text)
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


def _select(ctx: _Context, runner: StageRunner, train_file, checkpoint, checkpoint_id, selection, inputs) -> dict:
    """D_H, chosen once from the base model (line 1 of Algorithm 1)."""
    stage = ctx.stage("iteration_0/select", {"selection": selection, "execution": ctx.execution},
                      {"train": inputs["train"], "checkpoint": checkpoint_id, "exemplars": inputs["exemplars"]})
    hard_path = io.join(stage.directory, "hard.jsonl")

    def run():
        tasks = list(read_tasks(train_file)) if multihost.is_chief() else []
        rates = {}
        if selection.threshold is not None:
            samples = sample_tasks(tasks_file=train_file, variant=ctx.variant, sampling=selection.sampling,
                                   iteration=0, name="select/samples", **ctx.sampler_args(checkpoint, True))
            if multihost.is_chief():
                verdicts = io.join(stage.directory, "verdicts.jsonl")
                check_file({t.task_id: t for t in tasks}, samples, verdicts, execution=ctx.execution,
                           name="select: check")
                rates = building.pass_rates(read_records(verdicts, Verdict))
        if not multihost.is_chief():
            return None
        ids = [t.task_id for t in tasks]
        chosen = set(ids if selection.threshold is None else building.hard_problems(ids, rates, selection.threshold))
        write_records(hard_path, (t for t in tasks if t.task_id in chosen))
        io.write_text(io.join(stage.directory, "pass_rates.json"), json.dumps(rates, sort_keys=True) + "\n")
        solved = [c / n for n, c in rates.values() if n]
        return {"train_tasks": len(ids), "hard": len(chosen), "threshold": selection.threshold,
                "base_train_pass_at_1": sum(solved) / len(solved) if solved else None}

    result = runner.run(stage, run, collective=selection.threshold is not None)
    return dict(result, path=hard_path, key=stage.key)


def _iteration(ctx, runner, i, checkpoint, checkpoint_id, base_checkpoint, base_id, hard, sampling, build,
               finetune, seeds, inputs, seed, report_examples, train_fn) -> dict:
    """Sample, check, build B(i), fine-tune: returns the report row and the model of iteration i+1."""
    directory = lambda name: io.join(ctx.model_dir, f"iteration_{i}", name)  # noqa: E731
    sample_stage = ctx.stage(f"iteration_{i}/sample", {"sampling": sampling},
                             {"hard": hard["key"], "checkpoint": checkpoint_id,
                              "exemplars": inputs["exemplars"] if i == 0 else None})
    samples_path = io.join(directory("sample"), "samples.jsonl")
    runner.run(sample_stage, lambda: {"samples": sample_tasks(
        tasks_file=hard["path"], variant=ctx.variant, sampling=sampling, iteration=i, name="sample/samples",
        **ctx.sampler_args(checkpoint, i == 0))}, collective=True)

    check_stage = ctx.stage(f"iteration_{i}/check", {"execution": ctx.execution, "tests_field": build.tests_field},
                            {"samples": sample_stage.key})
    verdicts_path = io.join(directory("check"), "verdicts.jsonl")

    def check():
        check_file(tasks_by_id(hard["path"]), samples_path, verdicts_path, execution=ctx.execution,
                   tests_field=build.tests_field, name=f"iteration {i}: check")
        verdicts = read_all(verdicts_path, Verdict)
        statuses: Dict[str, int] = {}
        for v in verdicts:
            statuses[v.status] = statuses.get(v.status, 0) + 1
        return {"samples": len(verdicts), "passed": statuses.get("pass", 0), "statuses": statuses}

    checked = runner.run(check_stage, check)

    train_variant = finetune.train_variant or ctx.variant
    previous_build = io.join(ctx.model_dir, f"iteration_{i - 1}", "build", "b.jsonl") if i else None
    build_stage = ctx.stage(f"iteration_{i}/build", {"build": build, "train_variant": train_variant},
                            {"verdicts": check_stage.key, "seed": inputs["seed"] if build.include_seed else None,
                             "earlier": runner_key(ctx, i - 1, "build") if build.accumulate and i else None})
    b_path = io.join(build_stage.directory, "b.jsonl")

    def make_b():
        samples = read_all(samples_path, Sample)
        accepted = building.accepted_pairs(samples, read_all(verdicts_path, Verdict))
        earlier = ([s for s in read_records(previous_build, Sample) if s.model != "seed"]
                   if build.accumulate and previous_build else [])
        seed_pairs = building.seed_samples(seeds, iteration=i, variant=train_variant)
        training = building.build_training_set(accepted, build, earlier=earlier, seed=seed_pairs)
        hard_tasks = tasks_by_id(hard["path"])
        task_of = dict(hard_tasks, **{t.task_id: t for t, _ in seeds})
        write_records(b_path, training.pairs)
        needed = dict.fromkeys(s.task_id for s in training.pairs)
        write_records(io.join(build_stage.directory, "tasks.jsonl"), (task_of[t] for t in needed))
        stats = training.stats(hard["hard"])
        stats["examples"] = report_lib.examples(samples, read_all(verdicts_path, Verdict), hard_tasks,
                                                report_examples)
        return stats

    built = runner.run(build_stage, make_b)

    init, init_id = (checkpoint, checkpoint_id) if finetune.from_previous else (base_checkpoint, base_id)
    finetune_stage = ctx.stage(f"iteration_{i}/finetune", {"finetune": finetune, "seed": seed + i},
                               {"b": build_stage.key, "init": init_id})
    num_steps = finetune.steps_for(built["size"])

    def tune():
        if built["size"] == 0:
            logging.warning("iteration %d: B(%d) is empty; the next model is the starting model", i, i)
            return {"checkpoint": init, "num_steps": 0, "skipped": "empty B(i)"}
        from next_jax import tasks as tasks_lib

        pairs = [(s.task_id, s.text) for s in read_all(b_path, Sample)]
        task_name = f"next_selftrain_b_{build_stage.key.split(':')[1][:16]}"
        tasks_lib.register_repair_task(task_name, split_files={"train": io.join(build_stage.directory, "tasks.jsonl")},
                                       vocabulary=ctx.vocabulary, variant=train_variant,
                                       answers=lambda split: pairs, prompt_fn=ctx.fmt.prompt)
        out = _train(ctx, finetune, train_fn, task_name=task_name, init=init, num_steps=num_steps,
                     model_dir=finetune_stage.directory, seed=seed + i)
        return {"checkpoint": out["checkpoint"], "num_steps": num_steps, "metrics": out.get("metrics", {})}

    tuned = runner.run(finetune_stage, tune, collective=True)
    row = {"samples": checked["samples"], "samples_passed": checked["passed"], "statuses": checked["statuses"],
           "build": built, "finetune": tuned}
    next_id = init_id if tuned.get("skipped") else finetune_stage.key
    return {"row": row, "checkpoint": tuned["checkpoint"], "checkpoint_id": next_id}


def runner_key(ctx: _Context, i: int, name: str) -> Optional[str]:
    """The recorded key of an earlier stage (its manifest), as an input of a later one."""
    from next_jax.selftrain.stages import read_manifest

    manifest = multihost.broadcast_json(
        read_manifest(io.join(ctx.model_dir, f"iteration_{i}", name)) if multihost.is_chief() else None)
    return manifest.get("key") if manifest else None


def _train(ctx: _Context, finetune: FinetuneSettings, train_fn, *, task_name, init, num_steps, model_dir, seed) -> dict:
    """One fine-tune through the trainer (``next_jax.train.train`` unless ``train_fn`` is given)."""
    from next_jax import checkpoints

    if train_fn is None:
        from next_jax.train import train as train_fn
    kwargs = dict(
        model=ctx.model, task_name=task_name, task_feature_lengths=dict(ctx.task_feature_lengths),
        batch_size=finetune.batch_size, train_steps=num_steps, model_dir=model_dir,
        partitioner=ctx.partitioner,
        checkpoint_cfg=checkpoints.CheckpointConfig(period=finetune.checkpoint_period, keep=2),
        initial_checkpoint=init, summary_period=finetune.summary_period,
        num_microbatches=finetune.num_microbatches, pack=finetune.pack, seed=seed,
    )
    if finetune.optimizer is not None:
        kwargs["optimizer"] = finetune.optimizer
    out = train_fn(**kwargs)
    return {"checkpoint": out.checkpoint, "metrics": jsonable(out.metrics)}

