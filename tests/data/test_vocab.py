"""HuggingFaceVocabulary over a tokenizer.json that the test trains itself (no downloads)."""

import json
import pickle

import numpy as np
import pytest
import seqio
import tensorflow as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from next_jax.data.vocab import HuggingFaceVocabulary

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "assert add(1, 2) == 3\n",
    "for i in range(10):\n    print(i)  # loop\n",
    "Here is a fixed version:\n```python\nx = [1, 2, 3]\n```\n",
]
SPECIALS = ["<pad>", "<bos>", "<eos>", "<eot>"]


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "config.json").write_text(json.dumps({"model_type": "llama", "bos_token_id": 1, "eos_token_id": 2}))
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 3]}))
    return directory


def test_special_ids_come_from_the_checkpoint_configs(checkpoint_dir):
    vocab = HuggingFaceVocabulary(str(checkpoint_dir))
    assert (vocab.bos_id, vocab.eos_id, vocab.stop_ids) == (1, 2, (2, 3))
    assert vocab.pad_id == 2  # no pad id anywhere: falls back to EOS
    assert vocab.unk_id is None  # byte-level BPE has no unknown token
    assert vocab.vocab_size == Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json")).get_vocab_size()


def test_reads_a_checkpoint_directory_on_another_filesystem(checkpoint_dir):
    from next_jax import io as nj_io

    remote = "ram://vocab_test/ckpt"
    for name in ("tokenizer.json", "config.json", "generation_config.json"):
        nj_io.write_bytes(nj_io.join(remote, name), (checkpoint_dir / name).read_bytes())
    vocab, local = HuggingFaceVocabulary(remote), HuggingFaceVocabulary(str(checkpoint_dir))
    assert vocab.tokenizer_path == remote + "/tokenizer.json"
    assert (vocab.eos_id, vocab.stop_ids, vocab.vocab_size) == (local.eos_id, local.stop_ids, local.vocab_size)
    assert vocab.encode("def f(x): return x") == local.encode("def f(x): return x")
    nj_io.rmtree(remote)


def test_tokenizer_config_strings_and_explicit_ids(tmp_path, checkpoint_dir):
    (tmp_path / "tokenizer.json").write_bytes((checkpoint_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "<eot>", "pad_token": {"content": "<pad>"}, "bos_token": None})
    )
    vocab = HuggingFaceVocabulary(str(tmp_path / "tokenizer.json"))
    assert (vocab.eos_id, vocab.pad_id, vocab.bos_id, vocab.stop_ids) == (3, 0, None, (3,))
    explicit = HuggingFaceVocabulary(str(tmp_path), eos_id=2, stop_ids=[2, 3])
    assert (explicit.eos_id, explicit.stop_ids) == (2, (2, 3))


@pytest.mark.parametrize("text", ["    return a + b\n", "print('héllo ✓')\n\tx = 1", "", "<eos> as text"])
def test_encode_decode_roundtrip_without_special_tokens(checkpoint_dir, text):
    vocab = HuggingFaceVocabulary(str(checkpoint_dir))
    ids = vocab.encode(text)
    assert vocab.bos_id not in ids
    if text == "<eos> as text":  # special tokens in text are recognised, like transformers does
        assert ids[0] == vocab.eos_id and vocab.decode(ids) == ""  # decode stops at EOS
    else:
        assert vocab.decode(ids) == text


def test_decode_stops_at_eos_and_skips_padding(checkpoint_dir):
    vocab = HuggingFaceVocabulary(str(checkpoint_dir))
    ids = vocab.encode("x = 1")
    assert vocab.decode(ids + [vocab.eos_id] + vocab.encode("junk")) == "x = 1"
    assert vocab.decode([0] + ids + [0, 0]) == "x = 1"


def test_tf_encode_and_decode_match_python(checkpoint_dir):
    vocab = HuggingFaceVocabulary(str(checkpoint_dir))
    texts = ["def add(a, b):", "assert add(1, 2) == 3", ""]
    for text in texts:
        np.testing.assert_array_equal(vocab.encode_tf(tf.constant(text)).numpy(), vocab.encode(text))
    ragged = vocab.encode_tf(tf.constant(texts))
    assert [list(r) for r in ragged.numpy()] == [vocab.encode(t) for t in texts]
    width = 12
    batch = np.zeros((2, width), np.int32)
    for i, text in enumerate(texts[:2]):
        ids = vocab.encode(text)[: width - 1] + [vocab.eos_id]
        batch[i, : len(ids)] = ids
        batch[i, len(ids):] = 5  # garbage after EOS is ignored
    decoded = vocab.decode_tf(tf.constant(batch)).numpy()
    assert [d.decode() for d in decoded] == [vocab.decode(list(row)) for row in batch]


def test_works_in_a_seqio_task_pipeline(checkpoint_dir):
    vocab = HuggingFaceVocabulary(str(checkpoint_dir))

    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_tensor_slices({"inputs": ["def add(a, b):", "for i in range(10):"]})

    seqio.TaskRegistry.remove("test_vocab_task")
    task = seqio.TaskRegistry.add(
        "test_vocab_task",
        source=seqio.FunctionDataSource(dataset_fn, splits=["test"]),
        preprocessors=[seqio.preprocessors.tokenize],
        output_features={"inputs": seqio.Feature(vocab, add_eos=False)},
    )
    examples = list(task.get_dataset(sequence_length={"inputs": 64}, split="test", shuffle=False).as_numpy_iterator())
    assert [vocab.decode(e["inputs"]) for e in examples] == ["def add(a, b):", "for i in range(10):"]
    seqio.TaskRegistry.remove("test_vocab_task")


def test_pickles_and_compares(checkpoint_dir):
    vocab = HuggingFaceVocabulary(str(checkpoint_dir))
    vocab.encode("x")  # loads the tokenizer
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone == vocab and clone.encode("x = 1") == vocab.encode("x = 1")
    assert HuggingFaceVocabulary(str(checkpoint_dir), eos_id=3) != vocab


def test_missing_or_bad_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "tokenizer.json")):
        HuggingFaceVocabulary(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        HuggingFaceVocabulary(str(tmp_path)).encode("x")


def test_sentencepiece_trained_on_task_files_round_trips_code(tmp_path):
    from next_jax.data import records
    from next_jax.data.vocab import T5_SPECIAL_IDS, task_texts, train_sentencepiece

    tasks = [records.RepairTask(task_id=f"t/{i}", source="unit", description=f"Add {i} to x.",
                                buggy_code=f"def f(x):\n    return x - {i}\n", entry_point="f",
                                tests=[f"assert f(1) == {1 + i}"], reference_fix=f"def f(x):\n    return x + {i}\n")
             for i in range(40)]
    path = tmp_path / "tasks.jsonl"
    records.write_records(str(path), tasks)
    texts = list(task_texts([str(path)]))
    assert texts[:2] == ["Add 0 to x.", "def f(x):\n    return x - 0\n\nassert f(1) == 1"]
    vocab = train_sentencepiece(texts=texts * 5, model_path=str(tmp_path / "code.model"), vocab_size=400)
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (T5_SPECIAL_IDS["pad_id"], 1, 2)
    assert vocab.vocab_size == 400
    for text in CORPUS + ["\tdef g():\n\n    x  =  '✓ 中'  # unseen characters\n"]:
        ids = vocab.encode(text)
        assert 2 not in ids  # byte fallback: nothing becomes unk
        assert vocab.decode(ids) == text
        assert vocab.decode_tf(tf.constant(ids)).numpy().decode() == text
    assert len(vocab.encode(texts[1])) < len(texts[1]) / 2  # it learned pieces of the corpus
