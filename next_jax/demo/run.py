"""The CPU demo entry (``--run_mode=demo``): does the model read the trace, and does NExT amplify it?

The domain (:mod:`loops`): loops that mix accumulators over a list and return the last one
without the final shift the tests expect; the fix shifts it by the expected value minus the value
the trace shows the function return, so the trace is needed (a read) and, without it, the answer
is a guess among 9 shifts. For every seed (the seed varies the tasks and the model), on the same
tasks:

- bootstrap: a tiny byte-level model trained on ``num_seed`` labelled tasks with template
  rationales (standing in for a pretrained LLM prompted few-shot), from random weights or, with
  ``PretrainConfig.steps``, from a base model trained to predict the next token of unlabelled
  traced programs (every arm of the seed then starts from that base);
- NExT with traces: ``num_iterations`` rounds of sampling ``num_samples`` answers per unlabelled
  train task, keeping those whose fix passes every test of the task (the sandboxed executor),
  and fine-tuning the current model on them plus the seed set for ``finetune_steps``;
- NExT without traces: the same from a bootstrap trained and evaluated without traces;
- the same-budget control: the bootstrap model trained on the seed set alone for the same steps
  per evaluated model as NExT (each NExT model continues from the previous one, so the summed
  budgets are the same too);
- the upper bound: the bootstrap model trained on correct answers for every train task;
- the test-time ablation: the best NExT model evaluated without traces (section 6.4 of the paper);
- the counterfactual test: the best NExT model on test prompts whose trace shows another returned
  value (the share of answers whose fix follows the edit);
- the guessing baselines: rules that never look at the trace, fitted on fresh tasks.

The best iteration is chosen on the validation split; every figure is on the test split. The
splits are disjoint at the program level. NExT's iterations run Algorithm 1's table of stages
(:mod:`next_jax.selftrain.table`, the one ``run_next`` runs) with in-memory stages; the bootstrap,
the control and the upper bound are its fine-tune and test stages on other data. Everything runs
in this process with compiled functions reused across arms and seeds (:mod:`engine`). Outputs in ``model_dir``: ``demo.json``,
``report.md``, ``demo.png``; the last stdout line is one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from next_jax import decoding
from next_jax import io as nj_io
from next_jax.data import prompts
from next_jax.data.records import RepairTask, Sample, TracedTask
from next_jax.demo import answers, baselines, loops
from next_jax.demo.engine import Engine, TrainStepConfig, enable_compilation_cache
from next_jax.models.config import ModelConfig
from next_jax.selftrain import building
from next_jax.selftrain.settings import BuildConfig
from next_jax.selftrain.table import StageImpl, run_iteration
from next_jax.tracing.config import TraceConfig
from next_jax.demo import report
from next_jax.evaluation import formats as formats_lib
from next_jax.evaluation.runs import check_distinct
from next_jax.execution.checker import CheckConfig, Checker
from next_jax.execution.sandbox import SandboxPool
from next_jax.tracing.sandboxed import TARGET
from next_jax.tracing.traced_tasks import trace_tasks

ANSWER_FORMAT = "line_edit"
# Traces as the tracer writes them, with the shortest separators: every character costs here.
# A loop line shows only its last visit (the paper's abbreviation with no head): the values the
# repair reads, and rows short enough for the budget.
DEMO_TRACE_CONFIG = TraceConfig(comment_prefix=" # ", test_separator="", head_visits=0, min_hidden_visits=1)
FILTERS = ("fix", "rationale")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Tasks per split for each seed (disjoint programs across splits), how they are drawn, and
    how many fresh tasks fit the guessing baselines."""

    num_seed: int = 64
    num_train: int = 400
    num_val: int = 100
    num_test: int = 200
    num_baseline: int = 2000
    num_pretrain: int = 0
    balanced_splits: Tuple[str, ...] = ()
    loops: loops.LoopConfig = loops.LoopConfig()
    trace: TraceConfig = DEMO_TRACE_CONFIG
    workers: int = 2


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """An optional base model: next-token prediction on ``DataConfig.num_pretrain`` unlabelled
    traced programs (no repairs), standing in for a code LLM's pretraining; every arm of a seed
    starts from it. Off by default (0 steps: the arms start from random weights). With it (200
    steps on 400 programs, and a balanced seed split) the bootstrap learns to copy the returned
    value from 64 tasks within 100 steps on some seeds where it never does from random weights,
    and then the seed set alone teaches the control as much as NExT's samples teach NExT; on
    other seeds neither learns: it moves which seeds learn, it does not make every seed learn."""

    steps: int = 0
    train: TrainStepConfig = TrainStepConfig(learning_rate=3e-3, warmup_steps=20, batch_size=16)


@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
    """The bootstrap's training on the seed set. Long enough that more steps on the seed set no
    longer help (the same-budget control then gains a few points at most): what NExT adds over it
    is then its data, not extra steps on the seed set; at 300 steps the model was still learning
    from the seed set, and the control's steps were worth nearly as much as NExT's samples."""

    steps: int = 600
    train: TrainStepConfig = TrainStepConfig(learning_rate=3e-3, warmup_steps=20, batch_size=16)


@dataclasses.dataclass(frozen=True)
class NextConfig:
    """The self-training loop.

    filter: 'fix' keeps a sample whose fix passes every test (the paper's filter); 'rationale'
      also requires its rationale to state the trace's facts and agree with its own fix.
    build: how B(i) is made from the kept samples (selftrain's BuildConfig).
    """

    num_iterations: int = 2
    num_samples: int = 4
    temperature: float = 0.8
    finetune_steps: int = 100
    finetune: TrainStepConfig = TrainStepConfig(learning_rate=2e-3, warmup_steps=10, batch_size=16)
    filter: str = "fix"
    build: BuildConfig = BuildConfig(dedup="text", max_per_problem=1, include_seed=True,
                                         tests_field="eval_tests")

    def __post_init__(self):
        if self.filter not in FILTERS:
            raise ValueError(f"NextConfig.filter must be one of {FILTERS}, got {self.filter!r}")
        if self.num_iterations < 1:
            raise ValueError(f"NextConfig.num_iterations must be >= 1, got {self.num_iterations}")


TINY_MODEL = ModelConfig(vocab_size=384, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4, head_dim=16,
                         mlp_dim=256, tie_embeddings=True, max_seq_len=640)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Everything the demo does (gin binds this object once).

    seeds: each seed draws its own tasks and initialises its own models; figures are means over
      seeds with standard errors that use the pairing of arms on the same tasks.
    prompt_widths / answer_width: the fixed token shapes of the compiled functions; a job trains
      (and a call samples) at the narrowest width that holds its prompts.
    arms: which optional arms run ('no_trace', 'control', 'upper_bound', 'counterfactual').
    compilation_cache_dir: JAX's persistent compilation cache ('' = off; None = model_dir/jax_cache).
    """

    model_dir: str = "/tmp/next_jax_cpu_demo"
    seeds: Tuple[int, ...] = (0, 1, 2)
    data: DataConfig = DataConfig()
    model: ModelConfig = TINY_MODEL
    # The longest prompt without a trace is about 137 bytes, with one about 285.
    prompt_widths: Tuple[int, ...] = (144, 288)
    answer_width: int = 56
    sample_batch: int = 100
    pretrain: PretrainConfig = PretrainConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()
    next: NextConfig = NextConfig()
    arms: Tuple[str, ...] = ("no_trace", "control", "upper_bound", "counterfactual")
    compilation_cache_dir: Optional[str] = None

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("DemoConfig.seeds is empty")
        unknown = set(self.arms) - {"no_trace", "control", "upper_bound", "counterfactual"}
        if unknown:
            raise ValueError(f"DemoConfig.arms: unknown {sorted(unknown)}")


class _Clock:
    """Wall time per stage, summed over seeds and arms."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self.started = time.monotonic()

    def add(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - since
        if now - since > 5.0:  # the long steps show as they end (training, sampling, evaluating)
            logging.info("demo: %s took %.1f s (at %.0f s)", name, now - since, now - self.started)
        return now


# ---------------------------------------------------------------------------------------------
# Data.


def make_data(seed: int, config: DataConfig, pool) -> Dict[str, List[TracedTask]]:
    """The seed's splits, traced by the real tracer in the sandbox."""
    counts = {"seed": config.num_seed, "train": config.num_train, "val": config.num_val, "test": config.num_test,
              "pretrain": config.num_pretrain}
    splits = loops.make_splits(seed, counts, config.loops, balanced=config.balanced_splits)
    return {name: list(trace_tasks(tasks, config.trace, pool=pool)) for name, tasks in splits.items()}


def counterfactual(task: TracedTask) -> Tuple[TracedTask, int]:
    """The task with the returned value its trace shows edited to another digit (neither the true
    one nor the expected one) everywhere the trace shows it: the returned accumulator's last value
    on its loop line and the ``__return__`` mark. Returns the edited task and the shift an answer
    that reads the edit adds (the expected value minus the edited one)."""
    meta = task.meta
    rng = random.Random(task.task_id)
    edited = rng.choice([d for d in range(10) if d not in (meta["got"], meta["want"])])
    lines = task.traces[0].traced_code.split("\n")
    mark = f"__return__={meta['got']};"
    at = [i for i, line in enumerate(lines) if mark in line]
    if len(at) != 1:
        raise ValueError(f"task {task.task_id}: its trace does not show {mark} once")
    lines[at[0]] = lines[at[0]].replace(mark, f"__return__={edited};")
    # The accumulator's last shown value before the return (its loop line, or the line that set
    # it first when the loop never changed it) is the same final value.
    for i in range(at[0] - 1, -1, -1):
        code, _, comment = lines[i].partition("#")
        found = list(re.finditer(rf"\b{meta['returned']}=(\d+);", comment))
        if found:
            last = found[-1]
            if last.group(1) == str(meta["got"]):
                lines[i] = f"{code}#{comment[:last.start(1)]}{edited}{comment[last.end(1):]}"
            break
    trace = dataclasses.replace(task.traces[0], traced_code="\n".join(lines))
    return dataclasses.replace(task, traces=[trace]), (meta["want"] - edited) % 10


# ---------------------------------------------------------------------------------------------
# Sampling, checking, evaluating.


class _SeedRun:
    """What every stage of one seed reads: the engine, the executor, the clock, the tasks, the
    prompt variant of the arm it serves."""

    def __init__(self, engine: Engine, checker, clock: _Clock, config: DemoConfig, seed: int,
                 data: Mapping[str, List[TracedTask]], variant: str = "trace"):
        self.engine, self.checker, self.clock, self.config, self.seed = engine, checker, clock, config, seed
        self.data, self.variant = data, variant
        self.fmt = formats_lib.get_format(ANSWER_FORMAT)

    def with_variant(self, variant: str) -> "_SeedRun":
        return _SeedRun(self.engine, self.checker, self.clock, self.config, self.seed, self.data, variant)

    def prompts(self, tasks: Sequence[TracedTask], variant: str) -> List[List[int]]:
        return [self.engine.encode_prompt(self.fmt.prompt(t, variant, ())) for t in tasks]

    def samples(self, params, tasks: Sequence[TracedTask], variant: str, *, num_samples: int, temperature: float,
                tag: str, stage: str) -> List[Sample]:
        """Answers of ``params``; ``tag`` names the draw (arm, iteration, purpose), and each tag
        draws its own random numbers."""
        started = time.monotonic()
        texts = self.engine.sample(params, self.prompts(tasks, variant), num_samples=num_samples,
                                   temperature=temperature, task_ids=[t.task_id for t in tasks],
                                   run_seed=decoding.stage_seed(self.seed, tag))
        out = []
        for task, row in zip(tasks, texts):
            for j, text in enumerate(row):
                rationale, fix = self.fmt.parse(text, task)
                out.append(Sample(task_id=task.task_id, iteration=0, sample_id=f"{task.task_id}/{tag}/{j}",
                                  prompt_variant=variant, text=text, rationale=rationale, fix=fix, model=tag))
        self.clock.add(stage, started)
        return out

    def check(self, tasks: Sequence[RepairTask], samples: Sequence[Sample]) -> List[bool]:
        """Whether each sample's fix passes every test of its task (eval_tests), by the executor."""
        started = time.monotonic()
        by_id = {t.task_id: t for t in tasks}
        checkable = [s for s in samples if s.fix is not None]
        verdicts = {v.sample_id: v.passed for v in check_distinct(self.checker, by_id, checkable)}
        self.clock.add("check", started)
        return [verdicts.get(s.sample_id, False) for s in samples]

    def evaluate(self, params, variant: str, *, tag: str, split: str) -> dict:
        """Greedy pass@1 per task of one split (a 0/1 list), and rationale consistency."""
        tasks = self.data[split]
        samples = self.samples(params, tasks, variant, num_samples=1, temperature=0.0, tag=f"{tag}/{split}",
                               stage="eval")
        passed = self.check(tasks, samples)
        consistent = [answers.rationale_consistent(t, s.rationale, s.fix) for t, s in zip(tasks, samples)]
        return {"passed": [int(p) for p in passed], "consistent": [int(c) for c in consistent],
                "answers": [s.text for s in samples[:3]]}

    def counterfactual_share(self, params) -> dict:
        tasks, targets = zip(*(counterfactual(t) for t in self.data["test"]))
        samples = self.samples(params, tasks, "trace", num_samples=1, temperature=0.0, tag="counterfactual",
                               stage="eval")
        shifts = [answers.fix_shift(s.fix, t) for t, s in zip(tasks, samples)]
        return {"follows": [int(n == target) for n, target in zip(shifts, targets)],
                "original": [int(n == t.meta["shift"]) for n, t in zip(shifts, tasks)],
                "example": {"prompt": self.fmt.prompt(tasks[0], "trace", ()), "answer": samples[0].text}}

    def examples(self, pairs: Sequence[Tuple[TracedTask, str]], variant: str) -> List[Tuple[List[int], List[int]]]:
        out = []
        for task, answer in pairs:
            ids = self.engine.encode_answer(answer)
            if ids is not None:
                out.append((self.engine.encode_prompt(self.fmt.prompt(task, variant, ())), ids))
        return out

    def documents(self, pairs: Sequence[Tuple[TracedTask, str]]) -> List[Tuple[List[int], List[int]]]:
        """Each task's traced code as one document with the loss on every token."""
        return [([], self.engine.encode_document(task.traces[0].traced_code)) for task, _ in pairs]

    def seed_pairs(self) -> List[Tuple[TracedTask, str]]:
        return [(t, answers.loop_answer(t)) for t in self.data["seed"]]

    def labelled_pairs(self, split: str) -> List[Tuple[TracedTask, str]]:
        return [(t, answers.loop_answer(t)) for t in self.data[split]]


@dataclasses.dataclass(frozen=True)
class _Job:
    """What a fine-tune stage trains on: (task, answer) pairs, for how long, with which optimizer;
    ``stage`` names it on the clock (finetune, bootstrap, control, upper_bound) and ``salt`` makes
    its data order its own."""

    pairs: Sequence[Tuple[TracedTask, str]]
    steps: int
    settings: TrainStepConfig
    salt: int
    stage: str
    documents: bool = False  # next-token prediction on each task's traced code (no answer)


# ---------------------------------------------------------------------------------------------
# The stages of Algorithm 1 (next_jax.selftrain.table), in memory: each a function of
# (the seed's run, its clock, the iteration, its upstream outputs). ``model`` outputs are
# {"params": ...}. The bootstrap, the control and the upper bound are the fine-tune and test
# stages on other data.


def _select_stage(run: _SeedRun, clock: _Clock, i: int, up: Mapping[str, Any]) -> dict:
    """D_H: every train task (the tiny bootstrap solves too few for a pass-rate threshold to pick
    from)."""
    return {"tasks": run.data["train"]}


def _eval_stage(split: str):
    def stage(run: _SeedRun, clock: _Clock, i: int, up: Mapping[str, Any]) -> dict:
        return run.evaluate(up["model"]["params"], run.variant, tag=f"{run.variant}/{up['model']['name']}",
                            split=split)

    return stage


def _sample_stage(run: _SeedRun, clock: _Clock, i: int, up: Mapping[str, Any]) -> dict:
    nxt = run.config.next
    samples = run.samples(up["model"]["params"], up["select"]["tasks"], run.variant, num_samples=nxt.num_samples,
                          temperature=nxt.temperature, tag=f"{run.variant}/sample/{i}", stage="sample")
    return {"samples": samples}


def _check_stage(run: _SeedRun, clock: _Clock, i: int, up: Mapping[str, Any]) -> dict:
    samples = up["sample"]["samples"]
    passed = run.check(up["select"]["tasks"], samples)
    return {"passed": passed}


def _build_stage(run: _SeedRun, clock: _Clock, i: int, up: Mapping[str, Any]) -> dict:
    """B(i): the kept samples (fix filter, or fix and rationale), deduplicated and capped, plus
    the seed set; and the fine-tune job on it."""
    nxt = run.config.next
    tasks = up["select"]["tasks"]
    by_id = {t.task_id: t for t in tasks}
    samples, passed = up["sample"]["samples"], up["check"]["passed"]
    kept = [s for s, p in zip(samples, passed) if p]
    consistent = [s for s in kept if answers.rationale_consistent(by_id[s.task_id], s.rationale, s.fix)]
    if nxt.filter == "rationale":
        kept = consistent
    seeds = {t.task_id: t for t in run.data["seed"]}
    built = building.build_training_set(kept, nxt.build, seed=building.seed_samples(
        run.seed_pairs(), iteration=0, variant=run.variant))
    pairs = [(by_id.get(s.task_id) or seeds[s.task_id], s.text) for s in built.pairs]
    stats = {"samples": len(samples), "passed": int(sum(passed)), "covered": len({s.task_id for s in kept}),
             "kept_consistent": len(consistent), "kept": len(kept), "train_pairs": len(pairs),
             "example": next(({"task": s.task_id, "answer": s.text} for s in kept), None)}
    return {"job": _Job(pairs, nxt.finetune_steps, nxt.finetune, salt=11 + i, stage="finetune"), "stats": stats}


def _finetune_stage(run: _SeedRun, clock: _Clock, i: int, up: Mapping[str, Any]) -> dict:
    job: _Job = up["build"]["job"]
    started = time.monotonic()
    examples = run.documents(job.pairs) if job.documents else run.examples(job.pairs, run.variant)
    params, _ = run.engine.train(up["model"]["params"], examples, steps=job.steps, settings=job.settings,
                                 seed=run.seed * 1000 + job.salt)
    clock.add(job.stage, started)
    return {"model": {"params": params, "name": f"{job.stage}/{i + 1}"}}


def _training(run: _SeedRun, i: int) -> bool:
    return i < run.config.next.num_iterations


NEXT_STAGES: Dict[str, StageImpl] = {
    "select": StageImpl(_select_stage, lambda run, i: i == 0),
    "eval": StageImpl(_eval_stage("val"), report=lambda out: {"val": out}),
    "test": StageImpl(_eval_stage("test"), report=lambda out: {"test": out}),
    "sample": StageImpl(_sample_stage, _training),
    "check": StageImpl(_check_stage, _training),
    "build": StageImpl(_build_stage, _training, report=lambda out: {"stats": out["stats"]}),
    "finetune": StageImpl(_finetune_stage, _training),
}


def _tune(run: _SeedRun, params, job: _Job, i: int = 0):
    """The fine-tune stage on a job of the caller's (bootstrap, control, upper bound)."""
    return _finetune_stage(run, run.clock, i, {"build": {"job": job}, "model": {"params": params}})["model"]


def _test(run: _SeedRun, model) -> dict:
    return _eval_stage("test")(run, run.clock, 0, {"model": model})


def _base_model(run: _SeedRun):
    """The seed's random weights, trained on its pretrain split's traced programs when
    ``PretrainConfig.steps`` and ``DataConfig.num_pretrain`` ask for it."""
    pre = run.config.pretrain
    init = run.engine.init_params(pre.train, run.seed)
    if not (pre.steps and run.data["pretrain"]):
        return init
    return _tune(run, init, _Job([(t, "") for t in run.data["pretrain"]], pre.steps, pre.train, salt=0,
                                 stage="pretrain", documents=True))["params"]


def _next_arm(run: _SeedRun, base) -> dict:
    """Bootstrap from the base model, then NExT iterations through the table; per evaluated model
    its val/test results."""
    boot = run.config.bootstrap
    model = _tune(run, base, _Job(run.seed_pairs(), boot.steps, boot.train, salt=1, stage="bootstrap"))
    model["name"] = "bootstrap"
    outputs: Dict[str, Any] = {"model": model}
    models, evals, iterations = [], [], []
    for i in range(run.config.next.num_iterations + 1):
        models.append(outputs["model"]["params"])
        row = run_iteration(NEXT_STAGES, run, run.clock, i, outputs)
        evals.append({"val": row["val"], "test": row["test"]})
        if "stats" in row:
            iterations.append(row["stats"])
    return {"models": models, "evals": evals, "iterations": iterations}


def _control_arm(run: _SeedRun, bootstrap_params) -> List[dict]:
    """The bootstrap model trained on the seed set alone, tested after each block of as many steps
    as one NExT fine-tune."""
    nxt, model, evals = run.config.next, {"params": bootstrap_params}, []
    for i in range(nxt.num_iterations):
        model = _tune(run, model["params"], _Job(run.seed_pairs(), nxt.finetune_steps, nxt.finetune,
                                                 salt=101 + i, stage="control"), i)
        evals.append({"test": _test(run, model)})
    return evals


def _upper_arm(run: _SeedRun, bootstrap_params) -> dict:
    """The bootstrap model trained on correct answers for every train task (and the seed set)."""
    nxt, model = run.config.next, {"params": bootstrap_params}
    pairs = run.seed_pairs() + run.labelled_pairs("train")
    for i in range(nxt.num_iterations):
        model = _tune(run, model["params"], _Job(pairs, nxt.finetune_steps, nxt.finetune, salt=201 + i,
                                                 stage="upper_bound"), i)
    return {"test": _test(run, model)}


def run_seed(seed: int, config: DemoConfig, engine: Engine, checker, pool, clock: _Clock) -> dict:
    started = time.monotonic()
    data = make_data(seed, config.data, pool)
    clock.add("data", started)
    run = _SeedRun(engine, checker, clock, config, seed, data)
    logging.info("demo seed %d: bootstrap and NExT with traces", seed)
    base = _base_model(run)
    trace = _next_arm(run, base)
    val = [float(np.mean(e["val"]["passed"])) for e in trace["evals"]]
    best = max(range(len(val)), key=lambda j: (val[j], -j))
    row: Dict[str, Any] = {"seed": seed, "best_iteration": best,
                           "trace": {"evals": trace["evals"], "iterations": trace["iterations"]}}
    best_model = trace["models"][best]
    row["ablation"] = {"test": run.evaluate(best_model, "no_trace", tag="ablation", split="test")}
    if "counterfactual" in config.arms:
        row["counterfactual"] = run.counterfactual_share(best_model)
    if "control" in config.arms:
        logging.info("demo seed %d: same-budget control", seed)
        row["control"] = _control_arm(run, trace["models"][0])
    if "upper_bound" in config.arms:
        logging.info("demo seed %d: upper bound", seed)
        row["upper_bound"] = _upper_arm(run, trace["models"][0])
    if "no_trace" in config.arms:
        logging.info("demo seed %d: NExT without traces", seed)
        plain = _next_arm(run.with_variant("no_trace"), base)
        row["no_trace"] = {"evals": plain["evals"], "iterations": plain["iterations"]}
    t = time.monotonic()
    fitted = baselines.fit(seed, config.data.num_baseline, config.data.loops)
    row["baselines"] = baselines.evaluate(data["test"], fitted)
    row["baselines_val"] = baselines.evaluate(data["val"], fitted)
    clock.add("baselines", t)
    row["examples"] = {"prompt": run.fmt.prompt(data["test"][0], "trace", ()),
                       "answer": trace["evals"][best]["test"]["answers"][0]}
    return row


def _seed_figures(row: Mapping[str, Any]) -> dict:
    """One seed's test pass rates per arm (the per-seed progress file)."""
    rate = lambda e: round(float(np.mean(e["test"]["passed"])), 4)  # noqa: E731
    out = {"seed": row["seed"], "best_iteration": row["best_iteration"],
           "next_trace": [rate(e) for e in row["trace"]["evals"]], "ablation": rate(row["ablation"])}
    if "control" in row:
        out["control"] = [rate(e) for e in row["control"]]
    if "no_trace" in row:
        out["next_no_trace"] = [rate(e) for e in row["no_trace"]["evals"]]
    if "upper_bound" in row:
        out["upper_bound"] = rate(row["upper_bound"])
    if "counterfactual" in row:
        out["counterfactual_follows_edit"] = round(float(np.mean(row["counterfactual"]["follows"])), 4)
    return out


# ---------------------------------------------------------------------------------------------
# Statistics.


def paired(per_seed_a: Sequence[Sequence[float]], per_seed_b: Optional[Sequence[Sequence[float]]] = None) -> dict:
    """Mean over seeds of (a - b) per task, with a standard error that adds the seed variance
    (between-seed variance of the per-seed means over the number of seeds) to the task sampling
    variance (each seed's paired per-task variance over its task count, averaged over seeds)."""
    diffs = []
    for s, a in enumerate(per_seed_a):
        a = np.asarray(a, np.float64)
        diffs.append(a - np.asarray(per_seed_b[s], np.float64) if per_seed_b is not None else a)
    means = np.array([d.mean() for d in diffs])
    n = len(diffs)
    between = means.var(ddof=1) / n if n > 1 else 0.0
    within = sum(d.var(ddof=1) / len(d) for d in diffs if len(d) > 1) / (n * n)
    return {"mean": round(float(means.mean()), 4), "stderr": round(math.sqrt(between + within), 4),
            "per_seed": [round(float(m), 4) for m in means]}


def summarize(rows: Sequence[dict], config: DemoConfig) -> dict:
    """The headline figures (see the module doc); every pass rate is on the test split."""
    test = lambda evals: [e["test"]["passed"] for e in evals]  # noqa: E731
    iters = config.next.num_iterations + 1
    # The best iteration: the one with the best mean validation pass@1 over seeds.
    val_curve = [np.mean([np.mean(r["trace"]["evals"][j]["val"]["passed"]) for r in rows]) for j in range(iters)]
    best = int(max(range(iters), key=lambda j: (val_curve[j], -j)))
    trace_curve = [paired([r["trace"]["evals"][j]["test"]["passed"] for r in rows]) for j in range(iters)]
    best_trace = [r["trace"]["evals"][best]["test"]["passed"] for r in rows]
    out: Dict[str, Any] = {"seeds": [r["seed"] for r in rows], "best_iteration": best,
                           "next_trace": trace_curve, "bootstrap": trace_curve[0]}
    out["gain_over_bootstrap"] = paired(best_trace, [r["trace"]["evals"][0]["test"]["passed"] for r in rows])
    if all("control" in r for r in rows):
        control_curve = [trace_curve[0]] + [paired([r["control"][j - 1]["test"]["passed"] for r in rows])
                                            for j in range(1, iters)]
        out["control"] = control_curve
        at = max(best, 1)
        out["gain_over_control"] = paired(best_trace, [r["control"][at - 1]["test"]["passed"] for r in rows])
    if all("no_trace" in r for r in rows):
        plain_val = [np.mean([np.mean(r["no_trace"]["evals"][j]["val"]["passed"]) for r in rows])
                     for j in range(iters)]
        plain_best = int(max(range(iters), key=lambda j: (plain_val[j], -j)))
        out["next_no_trace"] = [paired([r["no_trace"]["evals"][j]["test"]["passed"] for r in rows])
                                for j in range(iters)]
        out["no_trace_best_iteration"] = plain_best
        out["gain_over_no_trace"] = paired(best_trace, [r["no_trace"]["evals"][plain_best]["test"]["passed"]
                                                        for r in rows])
    out["ablation_no_trace_at_test"] = paired([r["ablation"]["test"]["passed"] for r in rows])
    if all("upper_bound" in r for r in rows):
        out["upper_bound"] = paired([r["upper_bound"]["test"]["passed"] for r in rows])
    if all("counterfactual" in r for r in rows):
        out["counterfactual_follows_edit"] = paired([r["counterfactual"]["follows"] for r in rows])
        out["counterfactual_keeps_original"] = paired([r["counterfactual"]["original"] for r in rows])
    out["rationale_consistent"] = [paired([r["trace"]["evals"][j]["test"]["consistent"] for r in rows])
                                   for j in range(iters)]
    out["kept_rationale_consistent"] = [
        round(float(np.mean([it["kept_consistent"] / max(it["kept"], 1) for it in
                             (r["trace"]["iterations"][j] for r in rows)])), 4)
        for j in range(iters - 1)]
    names = sorted(rows[0]["baselines"])
    out["baselines"] = {name: paired([r["baselines"][name] for r in rows]) for name in names}
    # The strongest rival is chosen on validation, like the best iteration: no choice sees the test.
    val_score = {n: np.mean([np.mean(r["baselines_val"][n]) for r in rows]) for n in names}
    out["best_baseline"] = max(names, key=lambda n: (val_score[n], n))
    out["gain_over_best_baseline"] = paired(best_trace, [r["baselines"][out["best_baseline"]] for r in rows])
    return out


def headline(summary: Mapping[str, Any], wall_s: float) -> dict:
    """The one-line JSON: means, per-seed figures, gains with their standard errors."""
    line: Dict[str, Any] = {}
    best = summary["best_iteration"]

    def put(key, figure):
        line[key] = figure["mean"]
        line[key + "_stderr"] = figure["stderr"]
        line[key + "_per_seed"] = figure["per_seed"]

    line["next_trace_pass_at_1"] = [f["mean"] for f in summary["next_trace"]]
    line["next_trace_pass_at_1_per_seed"] = [f["per_seed"] for f in summary["next_trace"]]
    line["best_iteration"] = best
    put("best_pass_at_1", summary["next_trace"][best])
    put("bootstrap_pass_at_1", summary["bootstrap"])
    if "control" in summary:
        line["control_pass_at_1"] = [f["mean"] for f in summary["control"]]
        line["control_pass_at_1_per_seed"] = [f["per_seed"] for f in summary["control"]]
    if "next_no_trace" in summary:
        line["no_trace_pass_at_1"] = [f["mean"] for f in summary["next_no_trace"]]
        line["no_trace_pass_at_1_per_seed"] = [f["per_seed"] for f in summary["next_no_trace"]]
    if "upper_bound" in summary:
        put("upper_bound_pass_at_1", summary["upper_bound"])
    put("ablation_no_trace_at_test", summary["ablation_no_trace_at_test"])
    for key in ("gain_over_control", "gain_over_no_trace", "gain_over_bootstrap", "gain_over_best_baseline"):
        if key in summary:
            line[key] = summary[key]["mean"]
            line[key + "_stderr"] = summary[key]["stderr"]
    line["baselines"] = {k: v["mean"] for k, v in summary["baselines"].items()}
    line["best_baseline"] = summary["best_baseline"]
    if "counterfactual_follows_edit" in summary:
        put("counterfactual_follows_edit", summary["counterfactual_follows_edit"])
    line["rationale_consistent"] = [f["mean"] for f in summary["rationale_consistent"]]
    line["kept_rationale_consistent"] = summary["kept_rationale_consistent"]
    line["seeds"] = summary["seeds"]
    line["wall_s"] = round(wall_s, 1)
    return line


# ---------------------------------------------------------------------------------------------
# Entry.


def run_demo(*, config: DemoConfig = DemoConfig()) -> dict:
    """Runs the demo (see the module doc); prints the headline as the last stdout line."""
    import seqio

    clock = _Clock()
    nj_io.makedirs(config.model_dir)
    cache = config.compilation_cache_dir
    enable_compilation_cache(nj_io.join(config.model_dir, "jax_cache") if cache is None else cache)
    engine = Engine(config.model, seqio.ByteVocabulary(), prompt_widths=config.prompt_widths,
                    answer_width=config.answer_width, sample_batch=config.sample_batch)
    rows = []
    load_before = os.getloadavg()
    with SandboxPool(workers=config.data.workers, targets=[TARGET]) as pool, \
            Checker(workers=config.data.workers, options=CheckConfig(test_timeout_s=1.0,
                                                                      tests_field="eval_tests")) as checker:
        for seed in config.seeds:
            rows.append(run_seed(seed, config, engine, checker, pool, clock))
            # Each seed's figures as soon as they exist (a long run can be read before it ends).
            nj_io.write_text(nj_io.join(config.model_dir, f"seed_{seed}.json"),
                          json.dumps(_seed_figures(rows[-1]), sort_keys=True) + "\n")
            logging.info("demo seed %d done at %.0f s", seed, time.monotonic() - clock.started)
    wall = time.monotonic() - clock.started
    summary = summarize(rows, config)
    summary["stage_wall_s"] = {k: round(v, 1) for k, v in sorted(clock.seconds.items())}
    summary["load_average"] = {"start": [round(x, 2) for x in load_before],
                               "end": [round(x, 2) for x in os.getloadavg()]}
    summary["training_steps"] = engine.steps_run
    line = headline(summary, wall)

    report.write(config, summary, rows, line)
    nj_io.write_text(nj_io.join(config.model_dir, "demo.json"),
                  json.dumps({"summary": summary, "line": line}, indent=1, sort_keys=True) + "\n")
    print(json.dumps(line), flush=True)
    return line
