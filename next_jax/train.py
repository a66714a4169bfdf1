r"""The ``train`` entry function: fine-tune (or train from scratch) a decoder on a SeqIO task.

From the command line (``--run_mode=train``, configured by gin)::

    python -m next_jax.main --run_mode=train \
        --gin_file=gin_configs/experiments/train_tiny_cpu.gin \
        --gin.MODEL_DIR=\"/tmp/tiny_train\" --gin.TRAIN_STEPS=40

From Python (every argument keyword-only; the same function gin calls)::

    from next_jax import train, tasks
    from next_jax.models import lm
    result = train.train(
        model=lm.DecoderLM(config),            # or a bare ModelConfig
        task_name="my_task",                   # a registered SeqIO task or mixture
        task_feature_lengths={"inputs": 512, "targets": 256},
        batch_size=32, train_steps=200,
        model_dir="/tmp/run",                  # checkpoints/, train/ and eval/ event files
        initial_checkpoint="/ckpt/base",       # Hugging Face dir, orbax MODEL_DIR/step dir, or None
    )
    result.checkpoint    # 'MODEL_DIR/checkpoints/200': give it to infer(checkpoint=...)
    result.metrics       # {'loss': ..., 'accuracy': ..., ...} of the last summary period
    result.step          # 200

Resuming is implicit: when ``model_dir`` holds checkpoints, the newest one that reads back whole is
restored (state and input position; a step a crash left partial is skipped with a warning and moved
aside, never deleted; ``initial_checkpoint`` is then ignored) and training continues to
``train_steps``; calling again on a finished run returns its result without training. The input
pipeline is deterministic given ``seed``, so a resumed run sees exactly the batches an
uninterrupted one would, and ends with bitwise the same parameters on the same machine.

Training examples are packed (several per row, attention kept within each example) by SeqIO's
decoder-only converter; the loss covers the ``targets`` tokens only when the task has ``inputs``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import jax
from absl import logging

from next_jax import checkpoints, io, partitioning, trainer as trainer_lib
from next_jax.errors import UserFileNotFoundError, UserValueError
from next_jax.models import count_params, weights
from next_jax.models import lm as lm_lib
from next_jax.models.config import ModelConfig
from next_jax.optimizers import AdamW


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns: the final step, its checkpoint (None if saving is off) and metrics."""

    step: int
    checkpoint: Optional[str]
    metrics: dict


def as_lm(model) -> lm_lib.DecoderLM:
    if isinstance(model, lm_lib.DecoderLM):
        return model
    if isinstance(model, ModelConfig):
        return lm_lib.DecoderLM(model)
    raise TypeError(f"model must be a DecoderLM or a ModelConfig, got {type(model).__name__}")


# ---------------------------------------------------------------------------------------------
# Data.


def check_task(task_name: str, task_feature_lengths: Mapping[str, int], config: ModelConfig):
    """Fails before any work when the task, its feature lengths or its vocabulary do not fit."""
    import seqio

    try:
        task = seqio.get_mixture_or_task(task_name)
    except ValueError as e:
        raise UserValueError(f"task_name={task_name!r} is not a registered SeqIO task or mixture ({e})") from None
    features = task.output_features
    wanted = {k for k in ("inputs", "targets") if k in features}
    if "targets" not in wanted:
        raise UserValueError(f"task {task_name!r} has no 'targets' feature (has {sorted(features)}); nothing to learn")
    given = set(task_feature_lengths)
    if given != wanted:
        raise UserValueError(
            f"task_feature_lengths={dict(task_feature_lengths)} must give exactly the lengths of task "
            f"{task_name!r}'s features {sorted(wanted)}"
        )
    for key, length in task_feature_lengths.items():
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise UserValueError(f"task_feature_lengths[{key!r}] must be a positive int, got {length!r}")
    total = sum(task_feature_lengths.values())
    if total > config.max_seq_len:
        raise UserValueError(
            f"task_feature_lengths sum to {total} tokens, more than the model's max_seq_len={config.max_seq_len}; "
            "shorten them or raise ModelConfig.max_seq_len"
        )
    for key in wanted:
        vocab = features[key].vocabulary
        if vocab.vocab_size > config.vocab_size:
            raise UserValueError(
                f"task {task_name!r} feature {key!r}: vocabulary {type(vocab).__name__} has {vocab.vocab_size} "
                f"ids but the model's vocab_size is {config.vocab_size}; use the model's vocabulary (its "
                "model gin file's VOCABULARY) or a model whose vocab_size covers it"
            )
    return task


def get_dataset(task_name: str, task_feature_lengths: Mapping[str, int], *, split: str, batch_size: int,
                shuffle: bool, seed: int, pack: bool, repeat: bool, shard_info=None):
    """A tf.data pipeline of this host's rows: dicts of [batch_size, length] int arrays."""
    import seqio

    dataset = seqio.get_dataset(
        mixture_or_task_name=task_name,
        task_feature_lengths=dict(task_feature_lengths),
        feature_converter=seqio.DecoderFeatureConverter(pack=pack),
        dataset_split=split,
        use_cached=False,
        shuffle=shuffle,
        num_epochs=None if repeat else 1,
        shard_info=shard_info,
        seed=seed,
    )
    keep = ("decoder_target_tokens", "decoder_loss_weights", "decoder_segment_ids", "decoder_positions")
    dataset = dataset.map(lambda ex: {k: v for k, v in ex.items() if k in keep})
    return dataset.batch(batch_size, drop_remainder=repeat)


def host_shard(partitioner: partitioning.Partitioner, batch_size: int):
    import seqio

    index, count = partitioner.data_shard_info()
    if batch_size % count:
        raise UserValueError(f"batch_size={batch_size} is not divisible by the {count} input shards of the mesh")
    return seqio.ShardInfo(index=index, num_shards=count), batch_size // count


def generated_source(dataset_fn, splits: Sequence[str]):
    """A seqio DataSource over examples that ``dataset_fn(split)`` builds in memory.

    Unlike seqio's FunctionDataSource, it shards (each input shard takes every n-th example) and
    does not warn that restarts reshuffle: its examples are fixed, the shuffle happens downstream
    in seqio with the run's seed, and a resumed run skips exactly the batches it consumed.
    """
    import seqio

    class GeneratedSource(seqio.DataSource):
        @property
        def supports_arbitrary_sharding(self) -> bool:
            return True

        def list_shards(self, split: str):
            return [split]

        def get_dataset(self, split: str = "train", shuffle: bool = True, seed=None, shard_info=None, *,
                        sequence_length=None, use_cached: bool = False, num_epochs=1):
            del shuffle, seed, sequence_length, use_cached, num_epochs  # fixed examples, shuffled downstream
            dataset = dataset_fn(split)
            if shard_info is not None and shard_info.num_shards > 1:
                dataset = dataset.shard(shard_info.num_shards, shard_info.index)
            return dataset

    return GeneratedSource(splits=splits)


def demo_repair_task(*, name: str = "demo_repair", seed: int = 0, num_train: int = 1024, num_eval: int = 64,
                     vocabulary=None, pass_at_k: Sequence[int] = (1,)) -> str:
    """Registers the CPU demo's repair task (compact no-trace prompt -> one-line edit answer) and
    returns its name; splits 'train' and 'validation' are drawn procedurally, nothing is read.
    Its inference metric is pass@k of answers equal to the reference answer.

    Gin: ``TASK_NAME = @train.demo_repair_task()``.
    """
    import seqio
    import tensorflow as tf

    from next_jax import evaluate
    from next_jax.data import prompts
    from next_jax.demo import answers, domain

    vocabulary = vocabulary or seqio.ByteVocabulary()
    counts = {"train": num_train, "validation": num_eval}

    task_seed = seed

    def dataset_fn(split: str):
        tasks = domain.generate(task_seed, split, counts[split])
        return tf.data.Dataset.from_tensor_slices({
            "inputs": [prompts.build_compact_prompt(t, "no_trace") for t in tasks],
            "targets": [answers.template_answer(t) for t in tasks],
        })

    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=generated_source(dataset_fn, splits=list(counts)),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features={"inputs": seqio.Feature(vocabulary, add_eos=False),
                         "targets": seqio.Feature(vocabulary, add_eos=True)},
        metric_fns=[evaluate.pass_at_k_metric(ks=tuple(pass_at_k))] if pass_at_k else [],
    )
    return name


# ---------------------------------------------------------------------------------------------
# Summaries.


def metric_writer(model_dir: str, name: str):
    """clu writer for TensorBoard event files under MODEL_DIR/name (host 0 writes, others log)."""
    from clu import metric_writers

    writers = [metric_writers.LoggingWriter()]
    if jax.process_index() == 0:
        # Built directly rather than by create_default_writer, whose epath paths know no ram://.
        writers.append(metric_writers.SummaryWriter(io.join(model_dir, name)))
    return metric_writers.AsyncMultiWriter(writers)


def _gin_config_text() -> Optional[str]:
    try:
        import gin
    except ImportError:  # pragma: no cover - gin is a core dependency
        return None
    text = gin.config_str()
    return text or None


def flops_per_token(config: ModelConfig, sequence_length: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + attention (QK^T and AV, forward+backward)."""
    matmul_params = count_params(config) - (0 if config.tie_embeddings else config.vocab_size * config.hidden_size)
    attention = 12 * config.num_layers * sequence_length * config.num_heads * config.head_dim
    return 6.0 * matmul_params + attention


# ---------------------------------------------------------------------------------------------
# Entry.


def train(
    *,
    model,
    task_name: str,
    task_feature_lengths: Mapping[str, int],
    batch_size: int,
    train_steps: int,
    model_dir: str,
    optimizer=None,
    partitioner: Optional[partitioning.Partitioner] = None,
    checkpoint_cfg: checkpoints.CheckpointConfig = checkpoints.CheckpointConfig(),
    initial_checkpoint: Optional[str] = None,
    split: str = "train",
    eval_split: Optional[str] = None,
    eval_period: int = 0,
    eval_batches: Optional[int] = None,
    summary_period: int = 100,
    num_microbatches: int = 1,
    pack: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    peak_flops: Optional[float] = None,
) -> TrainResult:
    """Trains ``model`` on ``task_name`` for ``train_steps`` optimizer steps; see the module doc.

    Args:
      model: a ``DecoderLM`` (loss settings: z_loss, label_smoothing) or a ``ModelConfig``.
      task_name: a registered SeqIO task or mixture with ``targets`` (and usually ``inputs``).
      task_feature_lengths: e.g. ``{'inputs': 1536, 'targets': 512}``; packed rows hold their sum.
      batch_size: rows per step over all hosts (a multiple of num_microbatches x data shards).
      train_steps: the total number of steps of the run (a resumed run trains up to it).
      model_dir: checkpoints/, train/ (TensorBoard), eval/ (TensorBoard); any io path.
      optimizer: ``optimizers.AdamW()`` (default) or ``optimizers.Adafactor()``.
      partitioner: the mesh and rules (default: every device, data parallel).
      checkpoint_cfg: ``checkpoints.CheckpointConfig`` (period, keep, async_save, enabled).
      initial_checkpoint: weights to start from when ``model_dir`` has no checkpoint yet: a Hugging
        Face directory or an orbax checkpoint (MODEL_DIR, step directory or pytree); None = random.
      split, eval_split: the training split, and the split for teacher-forced eval (None = off).
      eval_period, eval_batches: eval every N steps (and at the end), on at most M batches.
      summary_period: steps between metric fetches and TensorBoard writes.
      num_microbatches: gradient accumulation: each step runs the batch in this many slices.
      pack, shuffle, seed: input pipeline (seed also seeds the initialisation).
      peak_flops: FLOP/s for the MFU estimate (default: a measured matmul on this backend).
    """
    lm = as_lm(model)
    config = lm.config
    for name, value in (("batch_size", batch_size), ("train_steps", train_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserValueError(f"train: {name} must be a positive int, got {value!r}")
    check_task(task_name, task_feature_lengths, config)
    if initial_checkpoint is not None and not io.isdir(initial_checkpoint):
        raise UserFileNotFoundError(
            f"train: initial_checkpoint={initial_checkpoint!r} does not exist; give a Hugging Face directory, an "
            "orbax checkpoint, or None to start from random weights"
        )
    if checkpoint_cfg.enabled and io.is_remote(model_dir) and model_dir.startswith("ram://"):
        raise UserValueError(
            f"train: model_dir={model_dir!r}: orbax writes checkpoints through TensorStore, which has no ram:// "
            "filesystem; pass checkpoint_cfg=CheckpointConfig(enabled=False) (metrics still go there) or use a "
            "local or gs:// MODEL_DIR"
        )
    partitioner = partitioner or partitioning.Partitioner(partitioning.make_mesh())
    optimizer = (optimizer or AdamW()).make(train_steps)
    trainer = trainer_lib.Trainer(lm, optimizer, partitioner, num_microbatches=num_microbatches, seed=seed)
    shard_info, local_rows = host_shard(partitioner, batch_size)
    if batch_size % (num_microbatches * partitioner.num_batch_shards):
        raise UserValueError(
            f"train: batch_size={batch_size} must be a multiple of num_microbatches={num_microbatches} x "
            f"{partitioner.num_batch_shards} data-parallel devices (mesh {dict(partitioner.mesh.shape)})"
        )

    checkpointer = checkpoints.Checkpointer(model_dir, checkpoint_cfg)
    try:
        return _run(
            lm, trainer, checkpointer, task_name=task_name, task_feature_lengths=task_feature_lengths,
            batch_size=batch_size, local_rows=local_rows, shard_info=shard_info, train_steps=train_steps,
            model_dir=model_dir, initial_checkpoint=initial_checkpoint, split=split, eval_split=eval_split,
            eval_period=eval_period, eval_batches=eval_batches, summary_period=summary_period, pack=pack,
            shuffle=shuffle, seed=seed, peak_flops=peak_flops,
        )
    finally:
        checkpointer.close()


def _run(lm, trainer, checkpointer, *, task_name, task_feature_lengths, batch_size, local_rows, shard_info,
         train_steps, model_dir, initial_checkpoint, split, eval_split, eval_period, eval_batches,
         summary_period, pack, shuffle, seed, peak_flops) -> TrainResult:
    config = lm.config
    position = {"batches": 0, "seed": seed}
    # The newest step that reads back whole (a crash mid-save can leave the newest one partial).
    restored = checkpointer.restore_latest(trainer.abstract_state, set_aside=True)
    if restored is not None:
        latest, state, position, summary = restored
        if latest >= train_steps:
            logging.info("train: %s already holds step %d >= train_steps=%d", checkpointer.directory, latest, train_steps)
            return TrainResult(step=latest, checkpoint=checkpointer.step_path(latest), metrics=summary.get("metrics", {}))
        logging.info("train: resuming from %s", checkpointer.step_path(latest))
        if position.get("seed", seed) != seed:
            raise UserValueError(
                f"train: {checkpointer.step_path(latest)} was written with seed={position.get('seed')}, this run has "
                f"seed={seed}; resume with the same seed (or use another MODEL_DIR)"
            )
        start = int(latest)
    elif initial_checkpoint is not None:
        params, _ = weights.load_params(initial_checkpoint, config, trainer.partitioner)
        state = trainer.state_from_params(params)
        start = 0
    else:
        state = trainer.init_state(seed)
        start = 0
    trainer.partitioner.log_param_table(state.params, trainer.params_logical,
                                        io.join(model_dir, "param_table.txt") if jax.process_index() == 0 else None)

    # Every process reads the whole stream of global batches and keeps its own rows, so the batches,
    # and the input position a checkpoint records, are the same whatever the number of processes: a
    # run saved by N processes resumes on M with exactly the batches it would have seen.
    dataset = get_dataset(task_name, task_feature_lengths, split=split, batch_size=batch_size, shuffle=shuffle,
                          seed=seed, pack=pack, repeat=True)
    rows = slice(shard_info.index * local_rows, (shard_info.index + 1) * local_rows)
    consumed = int(position.get("batches", 0))
    iterator = dataset.skip(consumed).prefetch(2).as_numpy_iterator()
    counter = {"batches": consumed}

    def batches():
        while True:
            batch = next(iterator)
            counter["batches"] += 1
            yield {name: rows_of[rows] for name, rows_of in batch.items()}

    writer = metric_writer(model_dir, "train")
    text = _gin_config_text()
    if text and start == 0:
        writer.write_texts(0, {"config": text})
    eval_fn = None
    if eval_split is not None:
        from next_jax import evaluate

        eval_fn = evaluate.TeacherForced(lm, trainer.partitioner, task_name, task_feature_lengths, split=eval_split,
                                         batch_size=batch_size, max_batches=eval_batches,
                                         writer=metric_writer(model_dir, "eval"))
    length = sum(task_feature_lengths.values())
    if peak_flops is None:
        peak_flops = trainer_lib.matmul_peak_flops(config.dtype)
    result = trainer_lib.train_loop(
        trainer, state, batches(), start_step=start, total_steps=train_steps,
        input_position=lambda: {"batches": counter["batches"], "seed": seed},
        checkpointer=checkpointer, writer=writer, summary_period=summary_period, eval_fn=eval_fn,
        eval_period=eval_period, flops_per_token=flops_per_token(config, length), peak_flops=peak_flops,
        tokens_per_batch=batch_size * length,
    )
    writer.close()
    return TrainResult(step=result.step, checkpoint=result.checkpoint, metrics=result.metrics)
