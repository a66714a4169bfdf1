"""SeqIO repair tasks built from record files."""

import seqio

from next_jax import tasks
from next_jax.data import prompts, records
from next_jax.data.records import RepairTask, Trace, TracedTask


def _write(tmp_path):
    tasks_ = []
    for i in range(3):
        task = RepairTask(task_id=f"t/{i}", source="unit", description=f"Return {i}.",
                          buggy_code=f"def f():\n    return {i + 1}\n", entry_point="f",
                          tests=[f"assert f() == {i}"])
        tasks_.append(TracedTask.from_repair_task(task, [
            Trace(test=task.tests[0], traced_code=f"def f():\n    return {i + 1}  # (0) __return__={i + 1}\nassert f() == {i}  # (1) __exception__ = AssertionError()", outcome="fail")]))
    path = tmp_path / "traced.jsonl"
    records.write_records(str(path), tasks_)
    return str(path), tasks_


def test_registered_task_yields_prompts_with_task_ids(tmp_path):
    path, written = _write(tmp_path)
    vocab = seqio.ByteVocabulary()
    tasks.register_repair_task("unit_repair_trace", split_files={"validation": path}, vocabulary=vocab)
    task = seqio.get_mixture_or_task("unit_repair_trace")
    examples = list(task.get_dataset(sequence_length=None, split="validation", shuffle=False).as_numpy_iterator())
    assert [e["task_id"].decode() for e in examples] == ["t/0", "t/1", "t/2"]
    for example, record in zip(examples, written):
        assert vocab.decode(example["inputs"].tolist()) == prompts.build_prompt(record, "trace")
        assert example["inputs_pretokenized"].decode() == prompts.build_prompt(record, "trace")


def test_no_trace_variant_and_targets(tmp_path):
    path, _ = _write(tmp_path)
    vocab = seqio.ByteVocabulary()
    answer = prompts.format_answer("It is off by one.", "def f():\n    return 0")
    tasks.register_repair_task("unit_repair_train", split_files={"train": path}, vocabulary=vocab,
                               variant="no_trace", answers=lambda split: [("t/2", answer), ("t/0", answer), ("t/2", answer)])
    ds = seqio.get_mixture_or_task("unit_repair_train").get_dataset(sequence_length=None, split="train", shuffle=False)
    examples = list(ds.as_numpy_iterator())
    assert [e["task_id"].decode() for e in examples] == ["t/2", "t/0", "t/2"]
    first = examples[0]
    assert "__return__" not in vocab.decode(first["inputs"].tolist())
    assert first["targets"][-1] == vocab.eos_id
    assert vocab.decode(first["targets"][:-1].tolist()) == answer


def test_answers_for_unknown_task_are_named(tmp_path):
    path, _ = _write(tmp_path)
    tasks.register_repair_task("unit_repair_bad", split_files={"train": path}, vocabulary=seqio.ByteVocabulary(),
                               variant="no_trace", answers=lambda split: [("t/9", "x")])
    import pytest
    with pytest.raises(ValueError, match=r"t/9"):
        list(seqio.get_mixture_or_task("unit_repair_bad").get_dataset(
            sequence_length=None, split="train", shuffle=False).as_numpy_iterator())


def test_split_may_be_several_shard_files_read_in_order(tmp_path):
    path, written = _write(tmp_path)
    second = tmp_path / "second.jsonl"
    records.write_records(str(second), written[:1])
    vocab = seqio.ByteVocabulary()
    tasks.register_repair_task("unit_repair_shards", split_files={"test": [path, str(second)]}, vocabulary=vocab,
                               variant="no_trace")
    ds = seqio.get_mixture_or_task("unit_repair_shards").get_dataset(sequence_length=None, split="test", shuffle=False)
    assert [e["task_id"].decode() for e in ds.as_numpy_iterator()] == ["t/0", "t/1", "t/2", "t/0"]


def test_built_tasks_need_a_build(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="not a built dataset"):
        tasks.register_built_tasks(str(tmp_path), vocabulary=seqio.ByteVocabulary())
