"""SeqIO tasks over NExT's repair records.

A repair task is a SeqIO ``Task`` whose examples are prompts built from TracedTask (or RepairTask)
JSON Lines files, one per split: ``inputs`` is the prompt (in the ``trace``, ``no_trace`` or
``proxy`` variant), ``task_id`` travels along as a string so samples can be matched back to their
task, and ``targets`` (when the records carry an answer, e.g. a training set B(i)) is the rationale
and fix. Registering is a function call, not an import side effect with hard-coded paths, because the
files are produced by earlier stages of a run; `seqio.get_mixture_or_task(name)` returns the task
afterwards like any other.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from next_jax.data import layout, prompts
from next_jax.data.records import RepairTask, read_tasks


def _load_examples(paths: Union[str, Sequence[str]], variant: str, exemplars, prompt_fn) -> Dict[str, list]:
    columns = {"task_id": [], "inputs": []}
    for path in [paths] if isinstance(paths, str) else paths:
        for record in read_tasks(path):
            columns["task_id"].append(record.task_id)
            columns["inputs"].append(prompt_fn(record, variant, exemplars))
    return columns


def register_repair_task(
    name: str,
    *,
    split_files: Mapping[str, str],
    vocabulary,
    variant: str = "trace",
    exemplars: Sequence[Tuple[RepairTask, str]] = (),
    answers: Optional[Callable[[str], Iterable[Tuple[str, str]]]] = None,
    prompt_fn: Optional[Callable[[RepairTask, str, tuple], str]] = None,
):
    """Registers (replacing any earlier one of that name) and returns a SeqIO repair task.

    Args:
      name: the SeqIO task name.
      split_files: split name -> JSON Lines file of TracedTask (or RepairTask for ``no_trace``),
        or a list of such files (the shards of a built dataset, read in order).
      vocabulary: the model's seqio vocabulary (MODEL file's VOCABULARY).
      variant: prompt variant, one of records.PROMPT_VARIANTS.
      exemplars: few-shot (task, answer) pairs placed before each prompt.
      answers: optional split -> iterable of (task_id, answer text) pairs; then the split has one
        example per pair (a task with several passing samples appears once per sample, as in a
        NExT training set B(i)), with ``targets`` holding the answer.
      prompt_fn: (record, variant, exemplars) -> prompt text; default ``prompts.build_prompt``
        (another answer format, e.g. the compact one, brings its own).
    """
    import seqio
    import tensorflow as tf

    if variant not in prompts.PROMPT_VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {prompts.PROMPT_VARIANTS}")

    def dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None):
        del shuffle_files, seed  # one file per split; order is the file's, so runs are reproducible
        if split not in split_files:
            raise ValueError(f"task {name!r} has no split {split!r} (has {sorted(split_files)})")
        columns = _load_examples(split_files[split], variant, tuple(exemplars), prompt_fn or prompts.build_prompt)
        if answers is not None:
            prompt_of = dict(zip(columns["task_id"], columns["inputs"]))
            pairs = list(answers(split))
            unknown = sorted({task_id for task_id, _ in pairs} - prompt_of.keys())
            if unknown:
                raise ValueError(f"task {name!r}, split {split!r}: answers for task_ids not in "
                                 f"{split_files[split]}: {unknown[:5]}")
            columns = {"task_id": [t for t, _ in pairs], "inputs": [prompt_of[t] for t, _ in pairs],
                       "targets": [a for _, a in pairs]}
        return tf.data.Dataset.from_tensor_slices(columns)

    output_features = {"inputs": seqio.Feature(vocabulary, add_eos=False)}
    preprocessors = [
        lambda ds: ds.map(lambda ex: dict(ex, inputs_pretokenized=ex["inputs"],
                                          **({"targets_pretokenized": ex["targets"]} if "targets" in ex else {}))),
        seqio.preprocessors.tokenize,
    ]
    if answers is not None:
        output_features["targets"] = seqio.Feature(vocabulary, add_eos=True)
        preprocessors.append(seqio.preprocessors.append_eos)
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(dataset_fn, splits=list(split_files)),
        preprocessors=preprocessors,
        output_features=output_features,
    )


def built_task_name(dataset: str, variant: str) -> str:
    return f"next_{dataset}_{variant}"


def register_built_tasks(
    built_dir: str,
    *,
    vocabulary,
    variants: Sequence[str] = prompts.PROMPT_VARIANTS,
    exemplars: Sequence[Tuple[RepairTask, str]] = (),
    prompt_fn: Optional[Callable[[RepairTask, str, tuple], str]] = None,
) -> List[str]:
    """Registers ``next_{dataset}_{variant}`` over a dataset built by ``next_jax.data.build``.

    Every split the build wrote (its ``stats.json`` names the dataset and the splits) becomes a
    split of each task, reading that split's shard files in order. Returns the task names.
    """
    stats = layout.read_stats(built_dir)
    files = {split: layout.split_files(built_dir, split) for split in stats["splits"]}
    empty = sorted(split for split, paths in files.items() if not paths)
    if empty:
        raise FileNotFoundError(f"{built_dir}: no shard files for splits {empty}")
    names = []
    for variant in variants:
        name = built_task_name(stats["dataset"], variant)
        register_repair_task(name, split_files=files, vocabulary=vocabulary, variant=variant,
                             exemplars=exemplars, prompt_fn=prompt_fn)
        names.append(name)
    return names
