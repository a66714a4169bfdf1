"""The CPU demo entry (``--run_mode=demo``): NExT's own effect, measured against a same-budget control.

For each model seed, and for each prompt variant (``trace``, and ``no_trace`` as the ablation):

1. data (once): seed, train and dev tasks of the procedural domain (:mod:`domain`), traced by the
   real tracer in the sandbox; the seed tasks carry their template answer in ``meta['answer']``;
2. bootstrap: a model trained from random weights on the seed set (standing in for a pretrained
   model prompted few-shot);
3. NExT: ``selftrain.run_next`` from the bootstrap model on the train tasks, dev evaluated after
   every iteration (``dev_pass_at_1``: the bootstrap first, then each iteration);
4. control (``trace`` only): the bootstrap model trained further on the seed set alone, for as many
   steps as the NExT fine-tunes took together, and evaluated on the same dev tasks.

Everything lands under ``model_dir`` (``data/``, ``seed_{s}/{variant}/{bootstrap,next,control}``,
``demo.json``) through stages with manifests, so a rerun skips what is done and a changed setting
is an error. The last line on stdout is one JSON object: ``dev_pass_at_1`` (the trace run, mean
over seeds), ``control_pass_at_1``, ``no_trace_pass_at_1`` (the no-trace run, same layout as
``dev_pass_at_1``), ``best_iteration``, ``wall_s``, plus per-seed figures and standard errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import logging

from next_jax import io as nj_io
from next_jax import checkpoints, partitioning
from next_jax import tasks as tasks_lib
from next_jax.data import records
from next_jax.demo import answers, domain
from next_jax.evaluation import formats as formats_lib
from next_jax.evaluation.repair import EvalConfig, evaluate_model, headline
from next_jax.evaluation.runs import ExecutionConfig, SamplingConfig
from next_jax.models.ref import ModelRef
from next_jax.execution.sandbox import SandboxPool
from next_jax.progress import Progress
from next_jax.selftrain.loop import FilesConfig, NextConfig, run_next
from next_jax.selftrain.settings import BuildConfig, FinetuneConfig, SelectionConfig
from next_jax.selftrain.stages import Stage, StageRunner, input_fingerprint, jsonable
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.sandboxed import TARGET
from next_jax.tracing.traced_tasks import trace_tasks
from next_jax.train import TrainConfig, train

ANSWER_FORMAT = "line_edit"
# Traces as the tracer writes them, with the shortest separators: every character costs here.
DEMO_TRACE_CONFIG = TraceConfig(comment_prefix=" # ", test_separator="")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The demo's tasks: how many of each split, drawn by ``domain.generate`` from ``seed``."""

    seed: int = 0
    num_seed: int = 150
    num_train: int = 500
    num_dev: int = 300
    domain: domain.DomainConfig = domain.DomainConfig()
    trace: TraceConfig = DEMO_TRACE_CONFIG
    workers: int = 2


@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
    """Supervised training of the base model on the seed set (and the control's extra steps).

    ``optimizer`` None = the trainer's default AdamW; ``control_optimizer`` None = the NExT
    fine-tune's optimizer, so the control differs from NExT only in its data.
    """

    num_steps: int = 150
    batch_size: int = 16
    optimizer: Any = None
    control_optimizer: Any = None
    checkpoint_period: int = 50


def make_data(model_dir: str, settings: DataConfig, runner: StageRunner) -> Dict[str, str]:
    """seed/train/dev TracedTask files under ``model_dir/data``; the seed tasks carry answers."""
    directory = nj_io.join(model_dir, "data")
    paths = {split: nj_io.join(directory, f"{split}.jsonl") for split in ("seed", "train", "dev")}
    stage = Stage(name="data", directory=directory, settings={"data": settings})

    def run():
        counts = {}
        sizes = {"seed": settings.num_seed, "train": settings.num_train, "dev": settings.num_dev}
        progress = Progress("demo data: trace", total=sum(sizes.values()), unit="tasks")
        with SandboxPool(workers=settings.workers, targets=[TARGET]) as pool:
            for split, count in sizes.items():
                tasks = domain.generate(settings.seed, split, count, settings.domain)
                if split == "seed":
                    tasks = [dataclasses.replace(t, meta=dict(t.meta, answer=answers.template_answer(t)))
                             for t in tasks]
                with nj_io.atomic_write(paths[split]) as f:
                    for traced in trace_tasks(tasks, settings.trace, pool=pool):
                        f.write(traced.to_json() + "\n")
                        progress.update(1)
                counts[split] = count
        progress.finish()
        return counts

    runner.run(stage, run)
    return paths


def _seed_task(name: str, seed_file: str, vocabulary, variant: str) -> str:
    pairs = [(t.task_id, t.meta["answer"]) for t in records.read_tasks(seed_file)]
    fmt = formats_lib.get_format(ANSWER_FORMAT)
    tasks_lib.register_repair_task(name, split_files={"train": seed_file}, vocabulary=vocabulary, variant=variant,
                                   answers=lambda split: pairs, prompt_fn=fmt.prompt)
    return name


def _train(*, model, task_name, task_feature_lengths, batch_size, steps, model_dir, init, optimizer, seed,
           checkpoint_period, partitioner) -> dict:
    kwargs = dict(model=model, task_name=task_name, task_feature_lengths=dict(task_feature_lengths),
                  batch_size=batch_size, train_steps=steps, model_dir=model_dir, initial_checkpoint=init,
                  checkpoint_cfg=checkpoints.CheckpointConfig(period=checkpoint_period, keep=1),
                  summary_period=min(25, steps), seed=seed, partitioner=partitioner)
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    out = train(TrainConfig(**kwargs))
    return {"checkpoint": out.checkpoint, "steps": out.step, "metrics": jsonable(out.metrics)}


def _mean_stderr(values: Sequence[float], num_tasks: Optional[int] = None) -> tuple:
    """Mean and standard error over seeds; with one seed, the binomial standard error of a pass
    rate measured on ``num_tasks`` tasks (None when no ``num_tasks`` is given, as for differences)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        if num_tasks:
            return mean, math.sqrt(mean * (1.0 - mean) / num_tasks)
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def run_demo(
    *,
    model_dir: str,
    model,
    vocabulary,
    task_feature_lengths: Mapping[str, int],
    data: DataConfig = DataConfig(),
    bootstrap: BootstrapConfig = BootstrapConfig(),
    num_iterations: int = 2,
    sampling: SamplingConfig = SamplingConfig(num_samples=8, temperature=0.8, max_new_tokens=48,
                                                  batch_size=32),
    build: BuildConfig = BuildConfig(dedup="text", max_per_problem=2, include_seed=True),
    finetune: FinetuneConfig = FinetuneConfig(num_steps=80, batch_size=16),
    evaluation: EvalConfig = EvalConfig(sampling=SamplingConfig(num_samples=1, temperature=0.0,
                                                                      max_new_tokens=48, batch_size=32),
                                            variants=("trace",), greedy=False, ks=(1,)),
    execution: ExecutionConfig = ExecutionConfig(workers=2, test_timeout_s=1.0),
    variants: Sequence[str] = ("trace", "no_trace"),
    control: bool = True,
    seeds: Sequence[int] = (0,),
    partitioner=None,
) -> dict:
    """Runs the demo (see the module doc); returns the summary and prints it as the last stdout line.

    Args:
      model_dir: where everything is written.
      model, vocabulary: the tiny model's ModelConfig and its (byte) vocabulary.
      task_feature_lengths: ``{'inputs': P, 'targets': T}``: prompt and answer token budgets.
      data, bootstrap: the tasks, and the base model's training (see their classes).
      num_iterations, sampling, build, finetune, execution: the NExT loop's settings
        (``selftrain.run_next``); hard-problem selection is off (every train task is sampled).
      evaluation: dev evaluation; its ``variants`` are replaced by each run's own variant.
      variants: the NExT runs: 'trace' (the headline) and 'no_trace' (the ablation); either alone
        is allowed (e.g. to run the two arms as two processes).
      control: also train and evaluate the same-budget control of the trace run.
      seeds: model seeds (initialisation, data order, sampling); figures are averaged over them.
    """
    started = time.monotonic()
    if not variants:
        raise ValueError("run_demo: variants is empty (choose from 'trace', 'no_trace')")
    for variant in variants:
        if variant not in ("trace", "no_trace"):
            raise ValueError(f"run_demo: variant {variant!r} is not 'trace' or 'no_trace'")
    if not seeds:
        raise ValueError("run_demo: seeds is empty")
    partitioner = partitioner or partitioning.Partitioner(partitioning.make_mesh())
    runner = StageRunner()
    paths = make_data(model_dir, data, runner)
    seed_fingerprint = input_fingerprint(paths["seed"])
    per_seed: List[dict] = []
    for seed in seeds:
        row: Dict[str, Any] = {"seed": seed}
        for variant in variants:
            base_dir = nj_io.join(model_dir, f"seed_{seed}", variant)
            task_name = _seed_task(f"next_demo_seed_{variant}", paths["seed"], vocabulary, variant)
            boot_stage = Stage(name=f"seed_{seed}/{variant}/bootstrap", directory=nj_io.join(base_dir, "bootstrap"),
                               settings={"bootstrap": bootstrap, "model": model, "variant": variant, "seed": seed,
                                         "task_feature_lengths": dict(task_feature_lengths)},
                               inputs={"seed": seed_fingerprint})
            boot = runner.run(boot_stage, lambda: _train(
                model=model, task_name=task_name, task_feature_lengths=task_feature_lengths,
                batch_size=bootstrap.batch_size, steps=bootstrap.num_steps, model_dir=boot_stage.directory,
                init=None, optimizer=bootstrap.optimizer, seed=seed, checkpoint_period=bootstrap.checkpoint_period,
                partitioner=partitioner), collective=True)
            result = run_next(NextConfig(
                model_dir=nj_io.join(base_dir, "next"),
                model=ModelRef(model=model, vocabulary=vocabulary, task_feature_lengths=task_feature_lengths,
                               checkpoint=boot["checkpoint"], init_seed=seed),
                files=FilesConfig(train_file=paths["train"], dev_file=paths["dev"], seed_file=paths["seed"],
                                  few_shot=False),
                num_iterations=num_iterations, prompt_variant=variant, answer_format=ANSWER_FORMAT,
                selection=SelectionConfig(threshold=None), sampling=dataclasses.replace(sampling, seed=seed),
                build=build, finetune=finetune, evaluation=dataclasses.replace(evaluation, variants=(variant,)),
                execution=execution, train_partitioner=partitioner, select_by=variant, seed=seed))
            row[variant] = {"dev_pass_at_1": result["dev_pass_at_1"], "best_iteration": result["best_iteration"],
                            "bootstrap_steps": boot["steps"],
                            "finetune_steps": [it.get("finetune", {}).get("num_steps", 0)
                                               for it in result["iterations"][:-1]],
                            "coverage": [it.get("build", {}).get("coverage") for it in result["iterations"][:-1]],
                            "timings_s": [it.get("timings_s", {}) for it in result["iterations"]]}
            if control and variant == "trace":
                row["control"] = _control(
                    runner, base_dir=base_dir, boot=boot, steps=sum(row[variant]["finetune_steps"]), seed=seed,
                    model=model, vocabulary=vocabulary, task_name=task_name, dev_file=paths["dev"],
                    task_feature_lengths=task_feature_lengths, bootstrap=bootstrap, finetune=finetune,
                    evaluation=dataclasses.replace(evaluation, variants=(variant,)), execution=execution,
                    partitioner=partitioner, seed_fingerprint=seed_fingerprint)
        per_seed.append(row)
    summary = summarize(per_seed, variants, control, num_dev=data.num_dev)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    summary["stage_wall_s"] = {name: round(s, 1) for name, s in runner.timings.items()}
    nj_io.write_text(nj_io.join(model_dir, "demo.json"), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    logging.info("demo: %s", json.dumps(summary, sort_keys=True))
    print(json.dumps(_headline(summary), sort_keys=False), flush=True)
    return summary


def _control(runner, *, base_dir, boot, steps, seed, model, vocabulary, task_name, dev_file, task_feature_lengths,
             bootstrap, finetune, evaluation, execution, partitioner, seed_fingerprint) -> dict:
    """The bootstrap model trained ``steps`` more on the seed set alone, evaluated on dev."""
    directory = nj_io.join(base_dir, "control")
    optimizer = bootstrap.control_optimizer or finetune.optimizer
    train_stage = Stage(name=f"seed_{seed}/control/train", directory=nj_io.join(directory, "train"),
                        settings={"steps": steps, "optimizer": optimizer, "batch_size": finetune.batch_size,
                                  "seed": seed},
                        inputs={"seed": seed_fingerprint, "init": boot["checkpoint"]})
    if steps == 0:
        trained = {"checkpoint": boot["checkpoint"], "steps": 0}
    else:
        trained = runner.run(train_stage, lambda: _train(
            model=model, task_name=task_name, task_feature_lengths=task_feature_lengths,
            batch_size=finetune.batch_size, steps=steps, model_dir=train_stage.directory, init=boot["checkpoint"],
            optimizer=optimizer, seed=seed + 1000, checkpoint_period=bootstrap.checkpoint_period,
            partitioner=partitioner), collective=True)
    eval_stage = Stage(name=f"seed_{seed}/control/eval", directory=nj_io.join(directory, "eval"),
                       settings={"evaluation": evaluation, "execution": execution},
                       inputs={"dev": input_fingerprint(dev_file), "checkpoint": trained["checkpoint"]})
    dev = runner.run(eval_stage, lambda: evaluate_model(
        model=ModelRef(model=model, vocabulary=vocabulary, task_feature_lengths=task_feature_lengths,
                       checkpoint=trained["checkpoint"], init_seed=seed, partitioner=partitioner),
        tasks_file=dev_file, settings=evaluation, model_dir=directory, iteration=0, subdir="eval",
        answer_format=ANSWER_FORMAT, execution=execution), collective=True)
    return {"steps": steps, "dev_pass_at_1": headline(dev, evaluation.variants[0])}


def summarize(per_seed: Sequence[dict], variants: Sequence[str], control: bool,
              num_dev: Optional[int] = None) -> dict:
    """Means (and standard errors) of the per-seed figures. The best iteration is the one with the
    best mean dev pass@1 of the trace run; the control is compared with that iteration.

    Standard errors are over seeds; with one seed (and ``num_dev`` given) they are the binomial
    errors of each pass rate over the ``num_dev`` dev tasks, and a margin's is that of the
    difference of two independent rates.
    """
    out: Dict[str, Any] = {"seeds": [row["seed"] for row in per_seed], "per_seed": list(per_seed)}
    for variant, key in (("trace", "dev_pass_at_1"), ("no_trace", "no_trace_pass_at_1")):
        if variant not in variants:
            continue
        curves = [row[variant]["dev_pass_at_1"] for row in per_seed]
        length = min(len(c) for c in curves)
        curve = [_mean_stderr([c[j] for c in curves], num_dev) for j in range(length)]
        out[key] = [round(m, 4) for m, _ in curve]
        out[key + "_stderr"] = [None if e is None else round(e, 4) for _, e in curve]
        if variant != "trace":
            continue
        best = max(range(length), key=lambda j: (curve[j][0], -j))
        out["best_iteration"] = best
        out["gain_over_bootstrap"] = round(_mean_stderr([c[best] - c[0] for c in curves])[0], 4)
        if control:
            controls = [row["control"]["dev_pass_at_1"] for row in per_seed]
            mean, err = _mean_stderr(controls, num_dev)
            out["control_pass_at_1"] = round(mean, 4)
            out["control_pass_at_1_stderr"] = None if err is None else round(err, 4)
            margin = _mean_stderr([c[best] - k for c, k in zip(curves, controls)])
            if margin[1] is None and err is not None and curve[best][1] is not None:
                margin = (margin[0], math.sqrt(err ** 2 + curve[best][1] ** 2))
            out["gain_over_control"] = round(margin[0], 4)
            out["gain_over_control_stderr"] = None if margin[1] is None else round(margin[1], 4)
    return out


def _headline(summary: Mapping[str, Any]) -> dict:
    keys = ("dev_pass_at_1", "control_pass_at_1", "no_trace_pass_at_1", "best_iteration", "wall_s",
            "dev_pass_at_1_stderr", "control_pass_at_1_stderr", "no_trace_pass_at_1_stderr", "gain_over_bootstrap",
            "gain_over_control", "gain_over_control_stderr", "seeds")
    return {k: summary[k] for k in keys if k in summary}
