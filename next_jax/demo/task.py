"""The CPU demo's repair task as a SeqIO task, for training and evaluating outside the demo's loop
(``gin_configs/experiments/train_tiny_cpu.gin``, the training benchmark, tests)."""

from __future__ import annotations

from typing import Sequence

from next_jax import checkpoint_eval, inputs
from next_jax.data import prompts
from next_jax.demo import answers, domain


def demo_repair_task(*, name: str = "demo_repair", seed: int = 0, num_train: int = 1024, num_eval: int = 64,
                     vocabulary=None, pass_at_k: Sequence[int] = (1,)) -> str:
    """Registers the CPU demo's repair task (compact no-trace prompt -> one-line edit answer) and
    returns its name; splits 'train' and 'validation' are drawn procedurally, nothing is read.
    Its inference metric is pass@k of answers equal to the reference answer.

    Gin: ``TASK_NAME = @demo_task.demo_repair_task()`` (``from next_jax.demo import task as demo_task``).
    """
    import seqio  # deferred with TensorFlow: importing the demo package stays light
    import tensorflow as tf

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
        source=inputs.generated_source(dataset_fn, splits=list(counts)),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features={"inputs": seqio.Feature(vocabulary, add_eos=False),
                         "targets": seqio.Feature(vocabulary, add_eos=True)},
        metric_fns=[checkpoint_eval.pass_at_k_metric(ks=tuple(pass_at_k))] if pass_at_k else [],
    )
    return name
