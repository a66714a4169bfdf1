r"""The ``train`` entry function: fine-tune (or train from scratch) a decoder on a SeqIO task.

From the command line (``--run_mode=train``, configured by gin)::

    python -m next_jax.main --run_mode=train \
        --gin_file=gin_configs/experiments/train_tiny_cpu.gin \
        --gin.MODEL_DIR=\"/tmp/tiny_train\" --gin.TRAIN_STEPS=40

From Python (one ``TrainConfig``; the same function gin calls)::

    from next_jax import train, tasks
    from next_jax.models import lm
    from next_jax.inputs import DatasetConfig
    result = train.train(train.TrainConfig(
        model=lm.DecoderLM(config),            # or a bare ModelConfig
        dataset_cfg=DatasetConfig(
            task_name="my_task",               # a registered SeqIO task or mixture
            task_feature_lengths={"inputs": 512, "targets": 256}, batch_size=32),
        train_steps=200,
        model_dir="/tmp/run",                  # checkpoints/, train/ and eval/ event files
        initial_checkpoint="/ckpt/base",       # Hugging Face dir, orbax MODEL_DIR/step dir, or None
        eval_cfg=train.TrainEvalConfig(split="validation", period=100),  # teacher-forced eval (default off)
    ))
    result.checkpoint    # 'MODEL_DIR/checkpoints/200': a models.ModelRef's checkpoint for infer
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
from typing import Any, Mapping, Optional

import gin
import jax
from absl import logging

from next_jax import checkpoint_eval, checkpoints, inputs, partitioning, trainer as trainer_lib
from next_jax import io as nj_io
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



# ---------------------------------------------------------------------------------------------
# Summaries.


def _gin_config_text() -> Optional[str]:
    text = gin.config_str()
    return text or None


def flops_per_token(config: ModelConfig, sequence_length: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + attention (QK^T and AV, forward+backward)."""
    matmul_params = count_params(config) - (0 if config.tie_embeddings else config.vocab_size * config.hidden_size)
    attention = 12 * config.num_layers * sequence_length * config.num_heads * config.head_dim
    return 6.0 * matmul_params + attention


# ---------------------------------------------------------------------------------------------
# Entry.


@dataclasses.dataclass(frozen=True)
class TrainEvalConfig:
    """Teacher-forced evaluation while training (TensorBoard ``MODEL_DIR/eval``).

    split: the split scored (None: no evaluation).
    period, batches: every ``period`` steps (and at the end; 0: only at the end), on at most
      ``batches`` batches of the training batch size (None: the whole split).
    """

    split: Optional[str] = None
    period: int = 0
    batches: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    """What the run reports (TensorBoard ``MODEL_DIR/train``).

    summary_period: steps between metric fetches and TensorBoard writes.
    peak_flops: FLOP/s for the MFU estimate (None: a measured matmul on this backend).
    """

    summary_period: int = 100
    peak_flops: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run; ``train(config)`` trains ``model`` on ``dataset_cfg`` for ``train_steps`` steps.

    model: a ``DecoderLM`` (loss settings: z_loss, label_smoothing) or a ``ModelConfig``.
    dataset_cfg: ``inputs.DatasetConfig``: the task, feature lengths, batch size (a multiple of
      num_microbatches x data shards), split, packing, shuffling.
    train_steps: the total number of steps of the run (a resumed run trains up to it).
    model_dir: checkpoints/, train/ (TensorBoard), eval/ (TensorBoard); any io path.
    optimizer: ``optimizers.AdamW()`` (None: its defaults) or ``optimizers.Adafactor()``.
    partitioner: the mesh and rules (None: every device, data parallel).
    num_microbatches: gradient accumulation: each step runs the batch in this many slices.
    seed: seeds the initialisation and the input order.
    initial_checkpoint: weights to start from when ``model_dir`` has no checkpoint yet: a Hugging
      Face directory or an orbax checkpoint (MODEL_DIR, step directory or pytree); None = random.
    checkpoint_cfg: ``checkpoints.CheckpointConfig`` (period, keep, async_save, enabled).
    eval_cfg: ``TrainEvalConfig``: teacher-forced evaluation during the run (default off).
    logging_cfg: ``LoggingConfig``: summary period, peak FLOP/s for MFU.
    """

    model: Any
    dataset_cfg: inputs.DatasetConfig
    train_steps: int
    model_dir: str
    optimizer: Any = None
    partitioner: Optional[partitioning.Partitioner] = None
    num_microbatches: int = 1
    seed: int = 0
    initial_checkpoint: Optional[str] = None
    checkpoint_cfg: checkpoints.CheckpointConfig = checkpoints.CheckpointConfig()
    eval_cfg: TrainEvalConfig = TrainEvalConfig()
    logging_cfg: LoggingConfig = LoggingConfig()


def train(config: TrainConfig) -> TrainResult:
    """Trains as ``config`` says; see the module doc (resuming, determinism, packing)."""
    c, data = config, config.dataset_cfg
    model, task_name, task_feature_lengths, model_dir = c.model, data.task_name, data.task_feature_lengths, c.model_dir
    batch_size, train_steps, optimizer, partitioner = data.batch_size, c.train_steps, c.optimizer, c.partitioner
    checkpoint_cfg, initial_checkpoint, num_microbatches, seed = (c.checkpoint_cfg, c.initial_checkpoint,
                                                                  c.num_microbatches, c.seed)
    lm = lm_lib.as_lm(model)
    config = lm.config
    for name, value in (("batch_size", batch_size), ("train_steps", train_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserValueError(f"train: {name} must be a positive int, got {value!r}")
    inputs.check_task(task_name, task_feature_lengths, config)
    if initial_checkpoint is not None and not nj_io.isdir(initial_checkpoint):
        raise UserFileNotFoundError(
            f"train: initial_checkpoint={initial_checkpoint!r} does not exist; give a Hugging Face directory, an "
            "orbax checkpoint, or None to start from random weights"
        )
    if checkpoint_cfg.enabled and nj_io.is_remote(model_dir) and model_dir.startswith("ram://"):
        raise UserValueError(
            f"train: model_dir={model_dir!r}: orbax writes checkpoints through TensorStore, which has no ram:// "
            "filesystem; pass checkpoint_cfg=CheckpointConfig(enabled=False) (metrics still go there) or use a "
            "local or gs:// MODEL_DIR"
        )
    partitioner = partitioner or partitioning.Partitioner(partitioning.make_mesh())
    optimizer = (optimizer or AdamW()).make(train_steps)
    trainer = trainer_lib.Trainer(lm, optimizer, partitioner, num_microbatches=num_microbatches, seed=seed)
    shard_info, local_rows = inputs.host_shard(partitioner, batch_size)
    if batch_size % (num_microbatches * partitioner.num_batch_shards):
        raise UserValueError(
            f"train: batch_size={batch_size} must be a multiple of num_microbatches={num_microbatches} x "
            f"{partitioner.num_batch_shards} data-parallel devices (mesh {dict(partitioner.mesh.shape)})"
        )

    checkpointer = checkpoints.Checkpointer(model_dir, checkpoint_cfg)
    try:
        return _run(lm, trainer, checkpointer, c, local_rows=local_rows, shard_info=shard_info)
    finally:
        checkpointer.close()


def _run(lm, trainer, checkpointer, c: TrainConfig, *, local_rows, shard_info) -> TrainResult:
    data, train_steps, model_dir, initial_checkpoint, seed = (c.dataset_cfg, c.train_steps, c.model_dir,
                                                              c.initial_checkpoint, c.seed)
    task_name, task_feature_lengths, batch_size = data.task_name, data.task_feature_lengths, data.batch_size
    eval_split, eval_period, eval_batches = c.eval_cfg.split, c.eval_cfg.period, c.eval_cfg.batches
    summary_period, peak_flops = c.logging_cfg.summary_period, c.logging_cfg.peak_flops
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
                                        nj_io.join(model_dir, "param_table.txt") if jax.process_index() == 0 else None)

    # Every process reads the whole stream of global batches and keeps its own rows, so the batches,
    # and the input position a checkpoint records, are the same whatever the number of processes: a
    # run saved by N processes resumes on M with exactly the batches it would have seen.
    dataset = inputs.get_dataset(task_name, task_feature_lengths, split=data.split, batch_size=batch_size,
                                 shuffle=data.shuffle, seed=seed, pack=data.pack, repeat=True)
    rows = slice(shard_info.index * local_rows, (shard_info.index + 1) * local_rows)
    consumed = int(position.get("batches", 0))
    iterator = dataset.skip(consumed).prefetch(2).as_numpy_iterator()
    counter = {"batches": consumed}

    def batches():
        while True:
            batch = next(iterator)
            counter["batches"] += 1
            yield {name: rows_of[rows] for name, rows_of in batch.items()}

    writer = trainer_lib.metric_writer(model_dir, "train")
    text = _gin_config_text()
    if text and start == 0:
        writer.write_texts(0, {"config": text})
    eval_fn = None
    if eval_split is not None:
        eval_fn = checkpoint_eval.TeacherForced(lm, trainer.partitioner, task_name, task_feature_lengths, split=eval_split,
                                         batch_size=batch_size, max_batches=eval_batches,
                                         writer=trainer_lib.metric_writer(model_dir, "eval"))
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
