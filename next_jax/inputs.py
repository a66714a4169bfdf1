"""The input pipeline every trainer and evaluator reads: SeqIO tasks checked against the model,
batched per host, sharded over the mesh's data axes.

``check_task`` fails before any work when a task does not fit the model; ``get_dataset`` is the
tf.data pipeline of one host's rows; ``host_shard`` splits a global batch over the input shards.
SeqIO (and TensorFlow under it) is imported inside each function: a process that only samples or
checks never pays for it.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from next_jax import partitioning
from next_jax.errors import UserValueError
from next_jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """The examples a run reads: a SeqIO task or mixture, cut to ``task_feature_lengths`` and batched.

    task_name: a registered SeqIO task or mixture with ``targets`` (and usually ``inputs``).
    task_feature_lengths: e.g. ``{'inputs': 1536, 'targets': 512}``; packed rows hold their sum.
    batch_size: rows per step over all hosts.
    split, pack, shuffle: the split read, several examples per row, shuffled order (seeded by the run).
    """

    task_name: str
    task_feature_lengths: Mapping[str, int]
    batch_size: int
    split: str = "train"
    pack: bool = True
    shuffle: bool = True


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
