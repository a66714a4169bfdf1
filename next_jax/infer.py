"""The ``infer`` entry function: N (rationale, fix) samples for every example of a SeqIO task.

Output goes under ``MODEL_DIR/iteration_N/``: chunk files of Sample records while the run is in
progress, then one ``{name}.jsonl`` with every sample and ``{name}.manifest.json`` recording the
settings (run seed included). Each chunk covers a fixed range of examples and is written atomically,
so a run killed at any point restarts at the first unfinished chunk and loses or duplicates
nothing; the manifest makes a restart with different settings an error instead of a silently mixed
file.

The sampler is one ``decoding.SamplingConfig`` (bound in gin as ``@decoding.SamplingConfig()``,
the object every place that samples takes). Every sample's seed is
``decoding.derive_seed(run_seed, task_id, sample_index)``, with the run seed ``sampling.seed``, and
is written into its record: sampling that task again with that seed (any batch size, any device
count) gives the same text. A ``sampling.seed`` of None draws a fresh run seed, so two evaluations
draw different samples unless asked otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import secrets
from typing import Mapping, Optional, Sequence

import jax
import numpy as np
from absl import logging

from next_jax.errors import UserValueError
from next_jax import decoding, partitioning
from next_jax import io as nj_io
from next_jax.data import prompts
from next_jax.data.records import AtomicWriter, Sample, read_records
from next_jax.models import weights
from next_jax.models.config import ModelConfig
from next_jax.models.ref import ModelRef
from next_jax.models.transformer import Transformer
from next_jax.progress import Progress


# infer's default sampler: one answer per prompt, from a fresh run seed.
ONE_SAMPLE = decoding.SamplingConfig(num_samples=1, seed=None)


@dataclasses.dataclass(frozen=True)
class Example:
    task_id: str
    tokens: np.ndarray  # int32 prompt, already cut to the length budget


# ---------------------------------------------------------------------------------------------
# Reading the task.


def read_examples(task_name: str, split: str, task_feature_lengths: Mapping[str, int]) -> tuple:
    """(examples in dataset order, number of prompts cut from the left to fit the budget)."""
    import seqio

    budget = int(task_feature_lengths["inputs"])
    task = seqio.get_mixture_or_task(task_name)
    dataset = task.get_dataset(
        sequence_length=dict(task_feature_lengths),
        split=split,
        shuffle=False,
        num_epochs=1,
        use_cached=False,
        trim_output_features=False,
    )
    examples, truncated, seen = [], 0, {}
    for index, features in enumerate(dataset.as_numpy_iterator()):
        for key in ("task_id", "inputs"):
            if key not in features:
                raise UserValueError(
                    f"task {task_name!r} split {split!r}: example {index} has no feature {key!r} "
                    f"(has {sorted(features)})"
                )
        task_id = features["task_id"]
        task_id = task_id.decode("utf-8") if isinstance(task_id, bytes) else str(task_id)
        if task_id in seen:
            raise UserValueError(
                f"task {task_name!r} split {split!r}: task_id {task_id!r} appears at examples {seen[task_id]} "
                f"and {index}; sample seeds and ids need unique task_ids"
            )
        seen[task_id] = index
        tokens = np.asarray(features["inputs"], np.int32).reshape(-1)
        if tokens.size == 0:
            raise UserValueError(f"task {task_name!r} split {split!r}: example {index} ({task_id}) has an empty prompt")
        if tokens.size > budget:  # keep the end of the prompt: that is where the question is
            tokens = tokens[-budget:]
            truncated += 1
        examples.append(Example(task_id, tokens))
    return examples, truncated


# ---------------------------------------------------------------------------------------------
# Output files.


class Output:
    """The files of one infer run: chunks, manifest and the merged samples file."""

    def __init__(self, model_dir: str, iteration: int, name: str):
        self.directory = nj_io.join(model_dir, f"iteration_{iteration}")
        self.final = nj_io.join(self.directory, f"{name}.jsonl")
        self.manifest = nj_io.join(self.directory, f"{name}.manifest.json")
        self.chunks = nj_io.join(self.directory, f"{name}.chunks")

    def chunk(self, index: int) -> str:
        return nj_io.join(self.chunks, f"chunk-{index:05d}.jsonl")

    def read_manifest(self) -> Optional[dict]:
        if not nj_io.exists(self.manifest):
            return None
        return json.loads(nj_io.read_text(self.manifest))

    def write_manifest(self, manifest: dict) -> None:
        nj_io.write_text(self.manifest, json.dumps(manifest, indent=2, sort_keys=True))

    def remove_partial_files(self) -> None:
        for path in nj_io.glob(nj_io.join(self.chunks, "*.tmp")):
            nj_io.remove(path)


def _check_manifest(found: dict, wanted: dict, path: str) -> None:
    diffs = [f"{key}: {found.get(key)!r} -> {wanted[key]!r}" for key in wanted if found.get(key) != wanted[key]]
    if diffs:
        raise UserValueError(
            f"{path}: this output was started with other settings ({'; '.join(diffs)}); "
            "use another MODEL_DIR or output_name, or remove the old output"
        )


# ---------------------------------------------------------------------------------------------
# Sampling.


def _model_config(model) -> ModelConfig:
    if isinstance(model, ModelConfig):
        return model
    config = getattr(model, "config", None)
    if isinstance(config, ModelConfig):
        return config
    raise TypeError(f"infer: model must be a ModelConfig or a Transformer, got {type(model).__name__}")


@functools.lru_cache(maxsize=8)
def compiled_generate(config, partitioner, max_new_tokens, top_k_cap, pad_id):
    """One jitted sampler per model and static settings, reused by later calls in the process
    (a NExT loop samples every iteration with the same model shapes)."""
    generate = functools.partial(
        decoding.generate, Transformer(config), max_new_tokens=max_new_tokens, top_k_cap=top_k_cap, pad_id=pad_id
    )
    return partitioner.jit(generate, out_shardings=partitioner.replicated)


class _Sampler:
    """Compiled once per run: fixed [batch_size, prompt width] prompts, N samples each."""

    pad_id = 0

    def __init__(self, config, params, partitioner, sampling: decoding.SamplingConfig, *, width: int,
                 stop_ids: Sequence[int]):
        self.partitioner = partitioner
        self.params = params
        self.batch_size, self.width, self.num_samples = sampling.batch_size, width, sampling.num_samples
        self.sampling = sampling.params(stop_ids)
        self._generate = compiled_generate(config, partitioner, sampling.max_new_tokens, sampling.top_k_cap,
                                           self.pad_id)
        self._shard_index, self._num_shards = partitioner.data_shard_info()

    def __call__(self, batch: Sequence[Example], seeds: np.ndarray):
        """tokens [b, N, T], lengths [b, N], logprobs [b, N] (numpy) for the ``b`` real examples."""
        rows = len(batch)
        prompt = np.full((self.batch_size, self.width), self.pad_id, np.int32)
        lengths = np.ones((self.batch_size,), np.int32)  # padding rows: a 1-token prompt, dropped
        key_data = np.zeros((self.batch_size, self.num_samples, 2), np.uint32)
        for i, example in enumerate(batch):
            prompt[i, : example.tokens.size] = example.tokens
            lengths[i] = example.tokens.size
        key_data[:rows] = decoding.seed_key_data(seeds)
        per_shard = self.batch_size // self._num_shards
        lo = self._shard_index * per_shard
        local = {"prompts": prompt[lo : lo + per_shard], "lengths": lengths[lo : lo + per_shard],
                 "seeds": key_data[lo : lo + per_shard]}
        inputs = self.partitioner.global_batch(local)
        out = self._generate(self.params, inputs["prompts"], inputs["lengths"], inputs["seeds"], self.sampling)
        return np.asarray(out.tokens)[:rows], np.asarray(out.lengths)[:rows], np.asarray(out.logprobs)[:rows]


@dataclasses.dataclass(frozen=True)
class InferConfig:
    """One inference run.

    model: the model, its weights and devices (``models.ModelRef``; its ``task_feature_lengths``
      need an ``'inputs'`` length: prompts longer than that keep their last tokens).
    task_name, split: a registered SeqIO task whose examples carry ``task_id`` and ``inputs``.
    model_dir: output root; samples go to ``model_dir/iteration_{iteration}/``.
    sampling: the sampler (``decoding.SamplingConfig``): N, temperature, top-k, top-p,
      max_new_tokens, stop ids, the prompts per device step (``batch_size``, a multiple of the
      data-parallel device count), the prompts per output chunk (``chunk_size``, the unit of
      resumption) and the run seed (``seed``; None draws a fresh one, kept on resume).
    iteration, prompt_variant, model_id: written into each Sample (model_id: default the checkpoint's).
    output_name: file stem (default ``samples.{task_name}.{split}``).
    """

    model: ModelRef
    task_name: str
    model_dir: str
    split: str = "test"
    sampling: decoding.SamplingConfig = ONE_SAMPLE
    iteration: int = 0
    prompt_variant: str = "trace"
    output_name: Optional[str] = None
    model_id: Optional[str] = None


def infer(config: InferConfig) -> str:
    """Samples ``sampling.num_samples`` answers per example of the task's split; returns the samples file."""
    ref, sampling, task_name, split = config.model, config.sampling, config.task_name, config.split
    model, vocabulary, checkpoint, init_seed = ref.model, ref.vocabulary, ref.checkpoint, ref.init_seed
    task_feature_lengths, model_dir, iteration = ref.task_feature_lengths, config.model_dir, config.iteration
    prompt_variant, output_name, model_id = config.prompt_variant, config.output_name, config.model_id
    config = _model_config(model)
    if prompt_variant not in prompts.PROMPT_VARIANTS:
        raise UserValueError(f"infer: prompt_variant {prompt_variant!r} is not one of {prompts.PROMPT_VARIANTS}")
    if not isinstance(sampling, decoding.SamplingConfig):
        raise TypeError(f"infer: sampling must be a decoding.SamplingConfig, got {type(sampling).__name__}")
    num_samples, max_new_tokens = sampling.num_samples, sampling.max_new_tokens
    batch_size, chunk_size, run_seed = sampling.batch_size, sampling.chunk_size, sampling.seed
    if "inputs" not in task_feature_lengths:
        raise UserValueError(f"infer: task_feature_lengths needs an 'inputs' length, got {dict(task_feature_lengths)}")
    partitioner = ref.partitioner or partitioning.Partitioner(partitioning.make_mesh())
    data_parallel = partitioner.num_batch_shards
    if batch_size % data_parallel:
        raise UserValueError(
            f"infer: batch_size={batch_size} must be a multiple of the {data_parallel} data-parallel devices "
            f"of mesh {dict(partitioner.mesh.shape)}"
        )
    width = int(task_feature_lengths["inputs"])
    if width + max_new_tokens > config.max_seq_len:
        raise UserValueError(
            f"infer: task_feature_lengths['inputs'] + max_new_tokens = {width + max_new_tokens} exceeds the "
            f"model's max_seq_len={config.max_seq_len}"
        )
    stop_ids = sampling.resolve_stop_ids(vocabulary)

    output = Output(model_dir, iteration, output_name or f"samples.{task_name}.{split}")
    examples, truncated = read_examples(task_name, split, task_feature_lengths)
    if truncated:
        logging.warning("%d of %d prompts were longer than %d tokens and lost their beginning",
                        truncated, len(examples), task_feature_lengths["inputs"])
    previous = output.read_manifest()
    if run_seed is None:
        run_seed = previous["run_seed"] if previous else secrets.randbits(63)
    manifest = dict(
        task_name=task_name, split=split, task_feature_lengths=dict(task_feature_lengths), num_examples=len(examples),
        num_samples=num_samples, temperature=float(sampling.temperature), top_k=int(sampling.top_k),
        top_p=float(sampling.top_p),
        max_new_tokens=max_new_tokens, stop_ids=stop_ids, run_seed=int(run_seed), iteration=iteration,
        prompt_variant=prompt_variant, chunk_size=chunk_size, model=model_id or weights.model_id(checkpoint, init_seed),
    )
    is_writer = jax.process_index() == 0
    if previous:
        _check_manifest(previous, manifest, output.manifest)
        if nj_io.exists(output.final):
            logging.info("%s is complete (%d examples x %d samples)", output.final, len(examples), num_samples)
            return output.final
    elif is_writer:
        output.write_manifest(manifest)
    if is_writer:
        nj_io.makedirs(output.chunks)
        output.remove_partial_files()
    logging.info(
        "infer: %d examples x %d samples, run_seed %d, output %s", len(examples), num_samples, run_seed, output.final
    )

    params, _ = weights.load_params(checkpoint, config, partitioner, init_seed=init_seed)
    sampler = _Sampler(config, params, partitioner, sampling, width=width, stop_ids=stop_ids)
    num_chunks = math.ceil(len(examples) / chunk_size)
    todo = [c for c in range(num_chunks) if not nj_io.exists(output.chunk(c))]
    logging.info("infer: %d of %d chunks already done", num_chunks - len(todo), num_chunks)
    progress = Progress("infer", total=sum(len(examples[c * chunk_size : (c + 1) * chunk_size]) for c in todo),
                        unit="prompts")
    samples_done = tokens_done = 0
    for c in todo:
        chunk = examples[c * chunk_size : (c + 1) * chunk_size]
        records = []
        for start in range(0, len(chunk), batch_size):
            batch = chunk[start : start + batch_size]
            batch_records, tokens = _sample_batch(
                sampler, batch, vocabulary, run_seed=run_seed, iteration=iteration, prompt_variant=prompt_variant,
                model=manifest["model"],
            )
            records.extend(batch_records)
            samples_done, tokens_done = samples_done + len(batch_records), tokens_done + tokens
            progress.update(len(batch), samples=samples_done, tokens=tokens_done, chunk=f"{c + 1}/{num_chunks}")
        if is_writer:
            with AtomicWriter(output.chunk(c)) as writer:
                for record in records:
                    writer.write(record)
    progress.finish()
    if is_writer:
        _merge(output, examples, num_chunks, num_samples)
    return output.final


def _sample_batch(sampler, batch, vocabulary, *, run_seed, iteration, prompt_variant, model) -> tuple:
    """(Sample records of ``batch`` in example-then-sample order, generated token count)."""
    seeds = np.array(
        [[decoding.derive_seed(run_seed, ex.task_id, j) for j in range(sampler.num_samples)] for ex in batch],
        dtype=object,
    )
    tokens, lengths, logprobs = sampler(batch, seeds)
    records = []
    for i, example in enumerate(batch):
        for j in range(sampler.num_samples):
            text = vocabulary.decode(tokens[i, j, : lengths[i, j]].tolist())
            rationale, fix = prompts.parse_output(text)
            records.append(Sample(
                task_id=example.task_id, iteration=iteration,
                sample_id=f"{example.task_id}/{iteration}/{prompt_variant}/{j}",
                prompt_variant=prompt_variant, text=text, rationale=rationale, fix=fix,
                logprob=float(logprobs[i, j]), model=model, seed=int(seeds[i, j]),
            ))
    return records, int(lengths.sum())


def _merge(output: Output, examples: Sequence[Example], num_chunks: int, num_samples: int) -> None:
    """Concatenates the chunks into the final file after checking every sample is there once."""
    expected = [(ex.task_id, j) for ex in examples for j in range(num_samples)]
    found = []
    for c in range(num_chunks):
        found.extend((s.task_id, s.sample_id) for s in read_records(output.chunk(c), Sample))
    keys = [(task_id, int(sample_id.rsplit("/", 1)[1])) for task_id, sample_id in found]
    if keys != expected:
        missing = sorted(set(expected) - set(keys))[:5]
        raise RuntimeError(
            f"{output.chunks}: chunks hold {len(keys)} samples, expected {len(expected)} (missing e.g. {missing}); "
            "remove the chunk directory to resample"
        )
    with AtomicWriter(output.final) as writer:
        for c in range(num_chunks):
            for record in read_records(output.chunk(c), Sample):
                writer.write(record)
    for c in range(num_chunks):
        nj_io.remove(output.chunk(c))
    nj_io.rmtree(output.chunks)
    logging.info("infer: wrote %d samples to %s", len(expected), output.final)
