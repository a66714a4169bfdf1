r"""Builds NExT's repair datasets (HeFix+, MBPP-R) as sharded TracedTask files, with Apache Beam.

    python -m next_jax.data.build --dataset=hefix_plus --out_dir=DIR \
        --humanevalfix=humanevalpack_python.jsonl --humanevalplus=HumanEvalPlus-v0.1.10.jsonl.gz
    python -m next_jax.data.build --dataset=mbpp_r --out_dir=DIR --mbpp=mbpp.jsonl \
        --mbppplus=MbppPlus.jsonl.gz [--samples=samples.jsonl] [-- --runner=DataflowRunner ...]

read (driver) -> shards of problems -> per shard, on a Beam worker with its own sandbox pools:
(inject mutants) -> check in the sandbox -> trace in the sandbox -> ``SPLIT-NNNNN-of-MMMMM.jsonl``
(TracedTask JSON Lines) + the shard's stats. ``stats.json`` merges every shard's stats with the
reader's counts. A rerun skips finished shards (a shard file exists only once it is complete)
and rebuilds the rest, so a killed build resumes. A malformed input row is reported by file,
line and field, counted in ``stats.json`` and skipped; the good rows are built.

Beam: the local FnApiRunner unless a ``--runner`` is passed (``--pipeline_options`` or
arguments after ``--``, e.g. ``-- --runner=DataflowRunner --project=P --region=R``; the
sandbox needs Linux namespaces on the workers).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Dict, List, Mapping, Optional, Sequence

from absl import app, flags, logging

from next_jax import io as nj_io
from next_jax.data import build_stats, evalplus, hefix_plus, mbpp_r, prompts
from next_jax.data.layout import shard_name, split_files
from next_jax.data.records import PROMPT_VARIANTS, TracedTask, read_records
from next_jax.execution.checker import CheckConfig, Checker
from next_jax.execution.sandbox import SandboxPool
from next_jax.progress import Progress
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.sandboxed import TARGET as TRACE_TARGET
from next_jax.tracing.traced_tasks import trace_tasks
from next_jax import startup_log

DATASETS = {"hefix_plus": hefix_plus, "mbpp_r": mbpp_r}
STATS_DIR = ".shard_stats"


@dataclasses.dataclass(frozen=True)
class DatasetBuildConfig:
    """Settings of one build (all plain values: Beam ships them to its workers).

    workers: sandbox workers per Beam worker (for checking and for tracing).
    test_timeout_s: per-test timeout when checking, computing expected outputs and tracing (a
      program that does not end costs about this much).
    units_per_shard: problems per shard (the unit of resumption and of Beam parallelism).
    seed: mutant order (MBPP-R from mutants).
    max_per_problem / max_candidates: MBPP-R's cap of kept programs per problem, and how many
      mutants per problem are tried.
    keep_timeouts: keep MBPP-R candidates that time out on a test.
    trace_budget: per-task trace budget in tokens of ``sentencepiece_model`` (else characters);
      None keeps whole traces.
    inputs_length: the feature length prompts are measured against (how many would be cut).
    sentencepiece_model: the vocabulary for token counts (None: words and punctuation marks).
    """

    workers: int = 2
    test_timeout_s: float = CheckConfig.test_timeout_s  # the default check's
    units_per_shard: int = 16
    seed: int = 0
    max_per_problem: int = 16
    max_candidates: int = 48
    keep_timeouts: bool = False
    trace_budget: Optional[int] = None
    inputs_length: Optional[int] = 2048
    sentencepiece_model: Optional[str] = None



class _Context:
    """What a shard build needs on a worker: the sandbox pools and the settings."""

    def __init__(self, options: DatasetBuildConfig):
        self.options = options
        self.test_timeout_s = options.test_timeout_s
        self.seed = options.seed
        self.max_per_problem = options.max_per_problem
        self.max_candidates = options.max_candidates
        self.keep_timeouts = options.keep_timeouts
        self.checker = Checker(workers=options.workers,
                               options=CheckConfig(test_timeout_s=options.test_timeout_s))
        self.pool = SandboxPool(workers=options.workers, targets=[TRACE_TARGET, evalplus.TARGET])
        self.count_tokens = build_stats.token_counter(options.sentencepiece_model)

    def close(self):
        self.checker.close()
        self.pool.close()


def _trace_config(options: DatasetBuildConfig):
    # The tracer first runs each test untraced under the test timeout, so a program that never
    # ends costs about that timeout.
    return TraceConfig(timeout_s=options.test_timeout_s)


def build_shard(dataset: str, name: str, units: List[dict], out_dir: str, ctx: _Context) -> dict:
    """Builds one shard file and its stats (the stats first: a shard file implies its stats)."""
    module = DATASETS[dataset]
    stats = build_stats.Stats()
    start = time.monotonic()
    tasks = list(module.process_units(units, ctx, stats))
    checked = time.monotonic()
    options = ctx.options
    count = ctx.count_tokens if options.sentencepiece_model else None
    traced = list(trace_tasks(tasks, _trace_config(options), pool=ctx.pool,
                              budget=options.trace_budget, count_tokens=count))
    for task in traced:
        stats.add(f"tasks/{task.source}")
        for trace in task.traces:
            stats.add(f"trace_outcome/{trace.outcome}")
            stats.add("traces_truncated", int(trace.truncated))
            stats.length("trace_tokens", ctx.count_tokens(trace.traced_code))
        stats.length("tests_per_task", len(task.tests))
        stats.length("eval_tests_per_task", len(task.eval_tests))
        for variant in PROMPT_VARIANTS:
            if variant == "trace" and not task.traces:
                continue
            stats.length(f"prompt_tokens/{variant}", ctx.count_tokens(prompts.build_prompt(task, variant)))
    stats.add("seconds_check_ms", int(1000 * (checked - start)))
    stats.add("seconds_trace_ms", int(1000 * (time.monotonic() - checked)))
    stats.add("units", len(units))
    nj_io.write_text(nj_io.join(out_dir, STATS_DIR, name + ".json"), json.dumps(stats.to_dict()))
    with nj_io.atomic_write(nj_io.join(out_dir, name + ".jsonl")) as f:
        for task in traced:
            f.write(task.to_json() + "\n")
    logging.info("build: %s: %d units -> %d tasks in %.1f s", name, len(units), len(traced),
                 time.monotonic() - start)
    return {"shard": name, "tasks": len(traced)}


def _beam_do_fn(dataset: str, out_dir: str, options: DatasetBuildConfig, total_shards: int):
    import apache_beam as beam  # deferred: Beam is slow to import and only the build pipeline needs it

    class BuildShard(beam.DoFn):
        def setup(self):
            self.ctx = _Context(options)
            # Per Beam worker: with one local worker this is the whole build's progress.
            self.progress = Progress(f"build {dataset}", total=total_shards, unit="shards", every_s=30.0)
            self.tasks = 0

        def process(self, element):
            name, units = element
            result = build_shard(dataset, name, units, out_dir, self.ctx)
            self.tasks += result["tasks"]
            self.progress.update(1, tasks=self.tasks)
            yield result

        def teardown(self):
            if getattr(self, "ctx", None) is not None:
                self.progress.finish(tasks=self.tasks)
                self.ctx.close()
                self.ctx = None

    return BuildShard()


def read_units(dataset: str, inputs: Mapping[str, Optional[str]], errors: list,
               limit: Optional[int] = None) -> Dict[str, List[dict]]:
    """Split -> units, read in the driver; malformed rows are appended to ``errors``."""
    if dataset == "hefix_plus":
        rows = hefix_plus.read_units(_need(inputs, "humanevalfix"), inputs.get("humanevalplus"),
                                     on_error=errors.append, limit=limit)
    elif dataset == "mbpp_r":
        rows = mbpp_r.read_units(_need(inputs, "mbpp"), inputs.get("mbppplus"), inputs.get("samples"),
                                 on_error=errors.append, limit=limit)
    else:
        raise ValueError(f"--dataset={dataset!r} is not one of {sorted(DATASETS)}")
    out: Dict[str, List[dict]] = {}
    for split, unit in rows:
        out.setdefault(split, []).append(unit)
    return out


def _need(inputs: Mapping[str, Optional[str]], key: str) -> str:
    if not inputs.get(key):
        raise ValueError(f"the dataset needs --{key}=PATH")
    return inputs[key]


def plan_shards(units: Dict[str, List[dict]], units_per_shard: int) -> Dict[str, List[dict]]:
    """Shard name -> its units: contiguous chunks of each split, the same for the same input."""
    shards = {}
    for split in sorted(units):
        items = units[split]
        count = max(1, math.ceil(len(items) / units_per_shard))
        size = math.ceil(len(items) / count)
        for i in range(count):
            shards[shard_name(split, i, count)] = items[i * size:(i + 1) * size]
    return shards


def _run_beam(dataset: str, shards: Mapping[str, List[dict]], out_dir: str, options: DatasetBuildConfig,
              pipeline_options: Sequence[str]) -> None:
    import apache_beam as beam  # deferred: Beam is slow to import and only the build pipeline needs it
    from apache_beam.options.pipeline_options import PipelineOptions

    beam_options = PipelineOptions(list(pipeline_options))
    runner = None
    if not any(arg.startswith("--runner") for arg in pipeline_options):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    with beam.Pipeline(runner=runner, options=beam_options) as pipeline:
        _ = (pipeline
             | "Shards" >> beam.Create(sorted(shards.items()))
             | "Spread" >> beam.Reshuffle()
             | "Build" >> beam.ParDo(_beam_do_fn(dataset, out_dir, options, len(shards))))


def build_dataset(*, dataset: str, out_dir: str, inputs: Mapping[str, Optional[str]],
                  options: DatasetBuildConfig = DatasetBuildConfig(), pipeline_options: Sequence[str] = (),
                  limit: Optional[int] = None) -> dict:
    """Builds (or resumes) ``dataset`` under ``out_dir``; returns the stats written to stats.json.

    Args:
      dataset: 'hefix_plus' or 'mbpp_r'.
      inputs: paths by name: humanevalfix, humanevalplus (hefix_plus); mbpp, mbppplus, samples
        (mbpp_r; without samples, the bug injector's mutants are the candidates).
      options: see DatasetBuildConfig.
      pipeline_options: Beam pipeline arguments (e.g. ``--runner=DataflowRunner``).
      limit: build only the first N problems of the input (for smoke runs).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not one of {sorted(DATASETS)}")
    start = time.monotonic()
    errors: list = []
    units = read_units(dataset, inputs, errors, limit)
    for error in errors[:20]:
        logging.warning("build: malformed input row skipped: %s", error)
    shards = plan_shards(units, options.units_per_shard)
    nj_io.makedirs(out_dir)
    todo = {name: items for name, items in shards.items()
            if not nj_io.exists(nj_io.join(out_dir, name + ".jsonl"))}
    logging.info("build: %s: %d problems in %d shards, %d to build", dataset,
                 sum(len(v) for v in units.values()), len(shards), len(todo))
    if todo:
        _run_beam(dataset, todo, out_dir, options, pipeline_options)
    stats = summarize(dataset, out_dir, shards, units, errors, options)
    stats["throughput"] = {
        "wall_s": round(time.monotonic() - start, 2), "shards_built": len(todo),
        "shards_skipped": len(shards) - len(todo),
        "units_built": sum(len(v) for v in todo.values()),
    }
    built_tasks = sum(stats["splits"][s]["tasks"] for s in stats["splits"])
    if todo and stats["throughput"]["wall_s"] > 0:
        stats["throughput"]["tasks_per_s"] = round(built_tasks / stats["throughput"]["wall_s"], 3)
    nj_io.write_text(nj_io.join(out_dir, "stats.json"), json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return stats


def summarize(dataset: str, out_dir: str, shards: Mapping[str, List[dict]], units: Mapping[str, list],
              errors: list, options: DatasetBuildConfig) -> dict:
    """Merges every shard's stats with the reader's counts into the stats.json object."""
    merged = build_stats.Stats()
    for name in shards:
        merged.merge(build_stats.Stats.from_dict(
            json.loads(nj_io.read_text(nj_io.join(out_dir, STATS_DIR, name + ".json")))))
    splits = {}
    for split in sorted(units):
        files = split_files(out_dir, split)
        splits[split] = {"problems": len(units[split]), "shards": len(files),
                         "tasks": sum(1 for f in files for _ in read_records(f, TracedTask))}
    lengths = merged.lengths
    return {
        "dataset": dataset,
        "splits": splits,
        "malformed_rows": len(errors),
        "malformed_examples": [str(e) for e in errors[:20]],
        "counts": build_stats.nested(merged.counts),
        "notes": dict(merged.notes),
        "token_counter": options.sentencepiece_model or "regex (words and punctuation)",
        "trace_tokens": build_stats.percentiles(lengths.get("trace_tokens", [])),
        "prompt_tokens": {v: build_stats.percentiles(lengths.get(f"prompt_tokens/{v}", []))
                          for v in PROMPT_VARIANTS},
        "prompts_over_inputs_length": {
            v: build_stats.overflow(lengths.get(f"prompt_tokens/{v}", []), options.inputs_length)
            for v in PROMPT_VARIANTS},
        "tests_per_task": build_stats.percentiles(lengths.get("tests_per_task", [])),
        "eval_tests_per_task": build_stats.percentiles(lengths.get("eval_tests_per_task", [])),
        "options": dataclasses.asdict(options),
    }


# ----------------------------------------------------------------------------------------------
# The binary.

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The binary's flags, defined only when it runs (importing the module defines none)."""
    flags.DEFINE_enum("dataset", None, sorted(DATASETS), "Which dataset to build.")
    flags.DEFINE_string("out_dir", None, "Where the shards and stats.json go (local or gs://...).")
    flags.DEFINE_string("humanevalfix", None, "HumanEvalPack Python file (humanevalpack_python.jsonl).")
    flags.DEFINE_string("humanevalplus", None, "HumanEval+ file (HumanEvalPlus-v0.1.10.jsonl.gz).")
    flags.DEFINE_string("mbpp", None, "MBPP file (mbpp.jsonl or sanitized-mbpp.json).")
    flags.DEFINE_string("mbppplus", None, "MBPP+ file (MbppPlus*.jsonl.gz); optional.")
    flags.DEFINE_string("samples", None, "Model samples for MBPP problems (Sample JSON Lines); "
                        "without it the bug injector's mutants are used.")
    flags.DEFINE_integer("limit", None, "Build only the first N problems.")
    flags.DEFINE_integer("workers", DatasetBuildConfig.workers, "Sandbox workers per Beam worker.")
    flags.DEFINE_float("test_timeout_s", DatasetBuildConfig.test_timeout_s, "Per-test timeout (s).")
    flags.DEFINE_integer("units_per_shard", DatasetBuildConfig.units_per_shard, "Problems per shard.")
    flags.DEFINE_integer("seed", DatasetBuildConfig.seed, "Seed of the mutant order.")
    flags.DEFINE_integer("max_per_problem", DatasetBuildConfig.max_per_problem, "MBPP-R: programs kept per problem.")
    flags.DEFINE_integer("max_candidates", DatasetBuildConfig.max_candidates, "MBPP-R: mutants tried per problem.")
    flags.DEFINE_bool("keep_timeouts", DatasetBuildConfig.keep_timeouts, "MBPP-R: keep programs that time out.")
    flags.DEFINE_integer("trace_budget", None, "Per-task trace budget (tokens, or characters).")
    flags.DEFINE_integer("inputs_length", DatasetBuildConfig.inputs_length, "Feature length prompts are measured against.")
    flags.DEFINE_string("sentencepiece_model", None, "SentencePiece model for token counts.")
    flags.DEFINE_multi_string("pipeline_options", [], "Beam pipeline arguments, e.g. --runner=DataflowRunner.")


def main(argv: Sequence[str]) -> None:
    if not FLAGS.dataset or not FLAGS.out_dir:
        raise app.UsageError("--dataset and --out_dir are required")
    options = DatasetBuildConfig(
        workers=FLAGS.workers, test_timeout_s=FLAGS.test_timeout_s, units_per_shard=FLAGS.units_per_shard,
        seed=FLAGS.seed, max_per_problem=FLAGS.max_per_problem, max_candidates=FLAGS.max_candidates,
        keep_timeouts=FLAGS.keep_timeouts, trace_budget=FLAGS.trace_budget,
        inputs_length=FLAGS.inputs_length, sentencepiece_model=FLAGS.sentencepiece_model)
    inputs = {"humanevalfix": FLAGS.humanevalfix, "humanevalplus": FLAGS.humanevalplus,
              "mbpp": FLAGS.mbpp, "mbppplus": FLAGS.mbppplus, "samples": FLAGS.samples}
    stats = build_dataset(dataset=FLAGS.dataset, out_dir=FLAGS.out_dir, inputs=inputs, options=options,
                          pipeline_options=list(FLAGS.pipeline_options) + list(argv[1:]), limit=FLAGS.limit)
    print(json.dumps({"dataset": stats["dataset"], "splits": stats["splits"],
                      "malformed_rows": stats["malformed_rows"], "throughput": stats["throughput"]}))


if __name__ == "__main__":
    startup_log.quiet_startup()  # first: TensorFlow's native libraries and Beam print warnings as they load
    define_flags()
    app.run(main)
