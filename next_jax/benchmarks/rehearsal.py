r"""Dress rehearsal at real shapes: one whole NExT iteration of the real experiment file, tiny counts.

    python -m next_jax.benchmarks.rehearsal [--mbpp=mbpp.jsonl] [--mbppplus=MbppPlus.jsonl.gz] [--work_dir=DIR]

(``--mbpp`` and ``--mbppplus`` are the MBPP and MBPP+ files the README's Data section names.) It runs ``gin_configs/experiments/qwen2_5_coder_1_5b_mbpp_r.gin`` (the MBPP-R experiment: bfloat16
compute, 2,048-token prompts, 512 new tokens, its remat and attention settings) with the model
file of ``--model`` (default Qwen2.5-Coder 0.5B) and random weights, on real MBPP-R tasks built
from the MBPP files by ``next_jax.data.build`` (the first ``--problems`` problems), with a
SentencePiece vocabulary trained on those tasks. Only the counts are tiny: a few tasks, n = N = 2
samples, ``--finetune_steps`` steps of ``--batch_size`` rows, one iteration, one device. The
fine-tune trains on the seed set (each task's reference fix as its answer), since a random model's
answers never pass.

While the loop runs, the process's resident memory is sampled (``--sample_s``) and the peak of each
stage (select, sample, check, build, finetune, eval) is recorded; the README's formulas for the
same model and settings are printed beside it. Prints one JSON line: the RSS before the loop
(interpreter, JAX, TensorFlow), per stage wall seconds and peak RSS (GB), the formula estimates, the dev pass@1 (of a random model: 0), the total time, and ``checks`` (real shapes went through, memory within the formula; exit status 1 when one fails). About 32 minutes on 2 cores: a measurement run by hand, not a test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

from next_jax import startup_log

GB = 1e9


class PeakMemory:
    """Samples this process's RSS in a thread; ``peak_since_mark`` is the largest since ``mark``."""

    def __init__(self, period_s: float = 0.2):
        import psutil

        self._proc = psutil.Process()
        self._period = period_s
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self._period):
            rss = self._proc.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def mark(self) -> int:
        """Starts a new window; returns the current RSS."""
        rss = self._proc.memory_info().rss
        with self._lock:
            self._peak = rss
        return rss

    def peak_since_mark(self) -> int:
        rss = self._proc.memory_info().rss
        with self._lock:
            self._peak = max(self._peak, rss)
            return self._peak

    def close(self):
        self._stop.set()
        self._thread.join()


def formula_gb(config, *, rows: int, prompt: int, answer: int, sampling_rows: int) -> Dict[str, float]:
    """The README's estimates ("Real models") for one device: training and sampling memory."""
    from next_jax.models import count_params  # deferred: jax and TensorFlow start with the run, not for --help

    params = count_params(config)
    tokens = prompt + answer
    train = 16 * params + rows * (2 * tokens * config.vocab_size * 4
                                  + config.num_layers * tokens * config.hidden_size * 2)
    kv = 2 * config.num_layers * config.num_kv_heads * config.head_dim * 2 * tokens * sampling_rows
    return {"params": params, "train_gb": round(train / GB, 2), "sampling_gb": round((4 * params + kv) / GB, 2)}


def build_tasks(work: str, mbpp: str, mbppplus: str, problems: int) -> List[str]:
    """Builds MBPP-R from the first ``problems`` MBPP problems; returns the train shard paths."""
    out = os.path.join(work, "mbpp_r")
    if os.path.exists(os.path.join(out, "stats.json")):  # built by an earlier run in this --work_dir
        return sorted(os.path.join(out, n) for n in os.listdir(out) if n.startswith("train-") and n.endswith(".jsonl"))
    cmd = [sys.executable, "-m", "next_jax.data.build", "--dataset=mbpp_r", f"--out_dir={out}", f"--mbpp={mbpp}",
           f"--limit={problems}", "--max_per_problem=1", "--max_candidates=12", "--workers=2"]
    if mbppplus:
        cmd.append(f"--mbppplus={mbppplus}")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return sorted(os.path.join(out, n) for n in os.listdir(out) if n.startswith("train-") and n.endswith(".jsonl"))


def main(argv=None) -> int:
    import argparse

    startup_log.quiet_startup()  # first: TensorFlow's native libraries and Beam print warnings as they load

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = os.path.join(os.path.dirname(repo), "shared", "data")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mbpp", default=os.path.join(shared, "mbpp", "mbpp.jsonl"))
    parser.add_argument("--mbppplus", default=os.path.join(shared, "evalplus", "MbppPlus-prerelease-767efcc.jsonl.gz"))
    parser.add_argument("--experiment", default="gin_configs/experiments/qwen2_5_coder_1_5b_mbpp_r.gin")
    parser.add_argument("--model", default="gin_configs/models/qwen2_5_coder_0_5b.gin")
    parser.add_argument("--problems", type=int, default=16, help="MBPP problems to build tasks from")
    parser.add_argument("--train_tasks", type=int, default=2)
    parser.add_argument("--dev_tasks", type=int, default=1)
    parser.add_argument("--vocab_size", type=int, default=2000)
    parser.add_argument("--finetune_steps", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=1, help="fine-tuning rows per step")
    parser.add_argument("--inputs_length", type=int, default=2048)
    parser.add_argument("--targets_length", type=int, default=512)
    parser.add_argument("--sample_s", type=float, default=0.2)
    parser.add_argument("--work_dir", default=None, help="default: a temporary directory, removed after")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra gin bindings")
    opts = parser.parse_args(argv)

    for path in (opts.mbpp, opts.mbppplus):
        if path and not os.path.exists(path):
            parser.error(f"{path}: no such file (the MBPP / MBPP+ files; see the README's Data section)")
    work = opts.work_dir or tempfile.mkdtemp(prefix="next_jax_rehearsal_")
    os.makedirs(work, exist_ok=True)
    started = time.monotonic()
    try:
        result = _rehearse(opts, work, repo)
    finally:
        if not opts.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["checks"] = checks(result)
    print(json.dumps(result))
    return 0 if all(result["checks"].values()) else 1


REHEARSED = ("select", "eval", "sample", "check", "build", "finetune")


def checks(result: dict) -> Dict[str, bool]:
    """What makes the figures those of a real-shape iteration: the 0.5B architecture (not a
    stand-in), every stage of iteration 0 and the next iteration's eval ran, and fine-tuning held at
    least the formula's state (16 bytes a parameter) and stayed within what the process held
    before the loop plus 1.5 x the formula (XLA's temporaries)."""
    params, stages = result.get("params", 0), result.get("stages", {})
    finetune = stages.get("iteration_0/finetune", {}).get("peak_rss_gb")
    return {
        "architecture_0_5b": 480e6 < params < 500e6,
        "every_stage_ran": all(f"iteration_0/{s}" in stages for s in REHEARSED) and "iteration_1/eval" in stages,
        "finetune_rss_within_formula": finetune is not None and 16 * params / GB < finetune
        < result.get("baseline_rss_gb", 0) + 1.5 * result.get("formula_train_gb", 0),
    }


def _rehearse(opts, work: str, repo: str) -> dict:
    import dataclasses

    from next_jax import main as main_lib  # deferred: jax and TensorFlow start with the run, not for --help
    from next_jax.data import prompts, vocab  # deferred: jax and TensorFlow start with the run, not for --help
    from next_jax.data.records import read_tasks, write_records  # deferred: jax and TensorFlow start with the run, not for --help
    from next_jax.selftrain import stages  # deferred: jax and TensorFlow start with the run, not for --help

    timings = {}
    t0 = time.monotonic()
    shards = build_tasks(work, opts.mbpp, opts.mbppplus, opts.problems)
    tasks = [t for path in shards for t in read_tasks(path)]
    need = opts.train_tasks + opts.dev_tasks
    if len(tasks) < need:
        raise SystemExit(f"rehearsal: the first {opts.problems} problems gave {len(tasks)} training tasks, "
                         f"fewer than {need}; raise --problems")
    timings["build_tasks_s"] = round(time.monotonic() - t0, 1)
    train, dev = tasks[:opts.train_tasks], tasks[opts.train_tasks:need]
    files = {name: os.path.join(work, f"{name}.jsonl") for name in ("train", "dev", "seed")}
    write_records(files["train"], train)
    write_records(files["dev"], dev)
    # The seed set: each training task with its reference fix as the answer (in the fenced format).
    seeds = [dataclasses.replace(t, meta={**t.meta, "answer": (
        f"The trace shows where the result goes wrong.\n\n{prompts.FIX_INTRO}\n```python\n{t.reference_fix}```\n")})
        for t in train]
    write_records(files["seed"], seeds)
    t0 = time.monotonic()
    sp_path = os.path.join(work, "mbpp_r.model")
    vocab.train_sentencepiece(texts=vocab.task_texts(shards), model_path=sp_path, vocab_size=opts.vocab_size)
    timings["sentencepiece_s"] = round(time.monotonic() - t0, 1)

    model_dir = os.path.join(work, "run")
    vocab_gin = os.path.join(work, "vocabulary.gin")
    with open(vocab_gin, "w") as f:
        f.write("from __gin__ import dynamic_registration\nimport seqio\n"
                "VOCABULARY = @seqio.SentencePieceVocabulary()\n"
                f"seqio.SentencePieceVocabulary.sentencepiece_model_file = '{sp_path}'\n")
    bindings = [
        f"MODEL_DIR = '{model_dir}'",
        f"TRAIN_FILE = '{files['train']}'",
        f"DEV_FILE = '{files['dev']}'",
        f"loop.FilesConfig.seed_file = '{files['seed']}'",
        "settings.BuildConfig.include_seed = True",
        "HF_CHECKPOINT_DIR = None",
        "repair.EvalConfig.proxy = None",
        "models.ModelConfig.dtype = 'bfloat16'",  # the experiment's, which the model file resets
        f"TASK_FEATURE_LENGTHS = {{'inputs': {opts.inputs_length}, 'targets': {opts.targets_length}}}",
        f"decoding.SamplingConfig.max_new_tokens = {opts.targets_length}",
        "loop.NextConfig.num_iterations = 1",
        "select/decoding.SamplingConfig.num_samples = 2",
        "sample/decoding.SamplingConfig.num_samples = 2",
        "eval/decoding.SamplingConfig.num_samples = 2",
        f"decoding.SamplingConfig.batch_size = {max(opts.train_tasks, opts.dev_tasks)}",
        f"settings.FinetuneConfig.num_steps = {opts.finetune_steps}",
        f"BATCH_SIZE = {opts.batch_size}",
        "WARMUP_STEPS = 1",
        "repair.EvalConfig.variants = ('trace',)",
        "repair.EvalConfig.greedy = False",
        "repair.EvalConfig.ks = (1,)",
        "runs.ExecutionConfig.workers = 2",
        "partitioning.Partitioner.axis_sizes = {'data': 1, 'fsdp': -1, 'model': 1}",
        "sampling/partitioning.Partitioner.axis_sizes = {'data': -1, 'fsdp': 1, 'model': 1}",
    ] + list(opts.overrides)

    memory = PeakMemory(opts.sample_s)
    baseline = memory.mark()  # the interpreter, JAX, TensorFlow and the data, before any stage
    per_stage: Dict[str, dict] = {}
    run_stage = stages.StageRunner.run

    def measured(self, stage, fn, *, collective=False):
        memory.mark()
        begin = time.monotonic()
        try:
            out = run_stage(self, stage, fn, collective=collective)
        except BaseException:
            print(json.dumps({"stage": stage.name, "failed_after_s": round(time.monotonic() - begin, 1),
                              "peak_rss_gb": round(memory.peak_since_mark() / GB, 2)}), file=sys.stderr, flush=True)
            raise
        per_stage[stage.name] = {"wall_s": round(time.monotonic() - begin, 1),
                                 "peak_rss_gb": round(memory.peak_since_mark() / GB, 2)}
        # Also as it happens: a stage that fails (out of memory) must not take the earlier figures along.
        print(json.dumps({"stage": stage.name, **per_stage[stage.name]}), file=sys.stderr, flush=True)
        return out

    stages.StageRunner.run = measured
    try:
        cwd = os.getcwd()
        os.chdir(repo)
        try:
            result = main_lib.run(None, [opts.experiment, opts.model, vocab_gin], bindings, [])
        finally:
            os.chdir(cwd)
    finally:
        stages.StageRunner.run = run_stage
        memory.close()
    config = _model_config()
    estimate = formula_gb(config, rows=opts.batch_size, prompt=opts.inputs_length, answer=opts.targets_length,
                          sampling_rows=2 * max(opts.train_tasks, opts.dev_tasks))
    return {"model": os.path.basename(opts.model), "params": estimate["params"],
            "baseline_rss_gb": round(baseline / GB, 2), "stages": per_stage,
            "formula_train_gb": estimate["train_gb"], "formula_sampling_gb": estimate["sampling_gb"],
            "dev_pass_at_1": _pass_at_1(result), "tasks": {"train": len(train), "dev": len(dev)}, **timings}


def _model_config():
    """The ModelConfig the run's gin files bound (its fields read back from gin)."""
    import dataclasses

    import gin

    from next_jax.models.config import ModelConfig  # deferred: jax and TensorFlow start with the run, not for --help

    fields = {}
    for field in dataclasses.fields(ModelConfig):
        try:
            fields[field.name] = gin.query_parameter(f"models.ModelConfig.{field.name}")
        except ValueError:
            pass
    return ModelConfig(**fields)


def _pass_at_1(result):
    if isinstance(result, dict):
        return result.get("dev_pass_at_1")
    return None


if __name__ == "__main__":
    sys.exit(main())
