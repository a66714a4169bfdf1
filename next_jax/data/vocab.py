"""Vocabularies: a SeqIO vocabulary over a Hugging Face ``tokenizer.json``, and SentencePiece training.

Real checkpoints ship their tokenizer as one ``tokenizer.json`` read by the ``tokenizers`` package,
next to ``config.json`` / ``generation_config.json`` that say which ids end a sequence. This
vocabulary wraps it for SeqIO tasks and for decoding, reading files through ``next_jax.io`` (a
local directory or ``gs://``; never a hub).

Conventions:
- ``encode`` adds no special tokens (no BOS): SeqIO encodes prompts and targets separately and
  concatenates them, so a BOS belongs to the prompt builder (``bos_id`` says which one).
- ``eos_id`` is the checkpoint's end-of-sequence id; instruction-tuned models often have several
  (Llama 3: end-of-text, end-of-turn, ...), all of which are in ``stop_ids`` for the sampler.
- ``pad_id`` is the checkpoint's pad id (else its EOS id). SeqIO's own converters still pad with 0;
  next_jax masks padding by lengths, never by token value, so a real token 0 is safe.

Models trained from scratch (the CPU demo's) get a SentencePiece vocabulary trained on the code
corpus itself (:func:`train_sentencepiece`, T5's id convention, so ``seqio.SentencePieceVocabulary``
and its converters work unchanged).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Iterator, Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf

from next_jax import io as nj_io
from next_jax.data.records import read_tasks
from next_jax.errors import UserFileNotFoundError


def _read_json(path: str) -> dict:
    if not nj_io.exists(path):
        return {}
    try:
        value = json.loads(nj_io.read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    return value if isinstance(value, dict) else {}


def _as_ids(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


class HuggingFaceVocabulary(seqio.Vocabulary):
    """seqio.Vocabulary over a ``tokenizer.json`` (a file, or a checkpoint directory; local or ``gs://``).

    Special ids come from, in order: the explicit arguments; ``generation_config.json`` and
    ``config.json`` beside the tokenizer; ``tokenizer_config.json``'s token strings.
    """

    def __init__(
        self,
        tokenizer_path: str,
        *,
        eos_id: Optional[int] = None,
        pad_id: Optional[int] = None,
        bos_id: Optional[int] = None,
        stop_ids: Optional[Sequence[int]] = None,
        extra_ids: int = 0,
    ):
        path = os.fspath(tokenizer_path)
        path = nj_io.absolute(path if nj_io.is_remote(path) else os.path.expanduser(path))
        directory = path
        if nj_io.isdir(path):
            path = nj_io.join(path, "tokenizer.json")
        else:
            directory = nj_io.dirname(path)
        if not nj_io.exists(path) or nj_io.isdir(path):
            raise UserFileNotFoundError(f"HuggingFaceVocabulary: no tokenizer file at {path} (a Hugging Face "
                                        "checkpoint directory holds config.json, *.safetensors and tokenizer.json)")
        self._path = path
        self._tokenizer = None
        super().__init__(extra_ids=extra_ids)

        generation = _read_json(nj_io.join(directory, "generation_config.json"))
        model = _read_json(nj_io.join(directory, "config.json"))
        tokenizer_config = _read_json(nj_io.join(directory, "tokenizer_config.json"))

        def from_configs(key: str) -> list:
            for config in (generation, model):
                ids = _as_ids(config.get(key))
                if ids:
                    return ids
            token = tokenizer_config.get(key.replace("_id", ""))
            if isinstance(token, dict):  # older files: {"content": "<eos>", ...}
                token = token.get("content")
            if isinstance(token, str):
                found = self.tokenizer.token_to_id(token)
                if found is not None:
                    return [found]
            return []

        eos_ids = [eos_id] if eos_id is not None else from_configs("eos_token_id")
        self._eos_id = eos_ids[0] if eos_ids else None
        self._stop_ids = tuple(int(s) for s in stop_ids) if stop_ids is not None else tuple(eos_ids)
        bos_ids = [bos_id] if bos_id is not None else from_configs("bos_token_id")
        self._bos_id = bos_ids[0] if bos_ids else None
        pad_ids = [pad_id] if pad_id is not None else from_configs("pad_token_id")
        self._pad_id = pad_ids[0] if pad_ids else self._eos_id
        for name, value in (("eos_id", self._eos_id), ("bos_id", self._bos_id), ("pad_id", self._pad_id)):
            if value is not None and not 0 <= value < self._base_vocab_size:
                raise ValueError(
                    f"HuggingFaceVocabulary({tokenizer_path}): {name}={value} is outside the tokenizer's "
                    f"{self._base_vocab_size} ids"
                )

    # -- the tokenizer, loaded lazily (and dropped when pickled) ------------------------------

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            try:
                self._tokenizer = Tokenizer.from_str(nj_io.read_text(self._path))
            except Exception as e:  # noqa: BLE001 - the library raises bare Exceptions
                raise ValueError(f"{self._path}: not a valid tokenizer.json ({e})") from None
        return self._tokenizer

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tokenizer"] = None
        return state

    @property
    def tokenizer_path(self) -> str:
        return self._path

    # -- seqio.Vocabulary ---------------------------------------------------------------------

    @property
    def eos_id(self) -> Optional[int]:
        return self._eos_id

    @property
    def bos_id(self) -> Optional[int]:
        return self._bos_id

    @property
    def pad_id(self) -> int:
        return self._pad_id if self._pad_id is not None else 0

    @property
    def unk_id(self) -> Optional[int]:
        token = getattr(self.tokenizer.model, "unk_token", None)
        return self.tokenizer.token_to_id(token) if token else None

    @property
    def stop_ids(self) -> tuple:
        """Every id that ends a sample (the checkpoint's EOS ids)."""
        return self._stop_ids

    @property
    def _base_vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _encode(self, s) -> list:
        if isinstance(s, bytes):
            s = s.decode("utf-8")
        return self.tokenizer.encode(s, add_special_tokens=False).ids

    def _decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        """A scalar string -> int32 ids [None]; a vector of strings -> a RaggedTensor [N, None]."""
        if s.shape.rank not in (0, 1):
            raise ValueError(f"HuggingFaceVocabulary.encode_tf: expected a scalar or vector of strings, got {s.shape}")

        def encode(batch):
            flat = [self._encode(x) for x in batch.numpy()]
            lengths = np.array([len(ids) for ids in flat], np.int32)
            values = np.array([i for ids in flat for i in ids], np.int32)
            return values, lengths

        values, lengths = tf.py_function(encode, [tf.reshape(s, [-1])], [tf.int32, tf.int32])
        values.set_shape([None])
        if s.shape.rank == 0:
            return values
        lengths.set_shape([None])
        return tf.RaggedTensor.from_row_lengths(values, lengths)

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        def decode(rows):
            rows = rows.numpy()
            texts = [self._decode(self._strip(row)).encode("utf-8") for row in rows.reshape(-1, rows.shape[-1])]
            return np.array(texts, dtype=object).reshape(rows.shape[:-1])

        out = tf.py_function(decode, [ids], tf.string)
        out.set_shape(ids.shape[:-1])
        return out

    def _strip(self, row) -> list:
        """Ids up to the first EOS; seqio's decode_tf has already turned what follows into pad ids."""
        row = [int(i) for i in row]
        if self._eos_id is not None and self._eos_id in row:
            row = row[: row.index(self._eos_id)]
        return row

    # -- identity -----------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        return hashlib.sha256(nj_io.read_bytes(self._path)).hexdigest()

    def __eq__(self, other) -> bool:
        if not isinstance(other, HuggingFaceVocabulary):
            return False
        return (
            (self._eos_id, self._bos_id, self._pad_id, self._stop_ids, self.extra_ids)
            == (other._eos_id, other._bos_id, other._pad_id, other._stop_ids, other.extra_ids)
            and self._fingerprint() == other._fingerprint()
        )

    def __hash__(self) -> int:
        return hash((self._path, self._eos_id))

    def __str__(self) -> str:
        return f"HuggingFaceVocabulary(tokenizer_path={self._path!r}, vocab_size={self.vocab_size}, eos_id={self._eos_id})"


# ----------------------------------------------------------------------------------------------
# SentencePiece vocabularies for models trained from scratch (T5's id convention).

T5_SPECIAL_IDS = {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1}


def train_sentencepiece(
    *,
    texts,
    model_path: str,
    vocab_size: int = 8000,
    model_type: str = "bpe",
    extra_ids: int = 0,
    max_text_chars: int = 100_000,
) -> seqio.SentencePieceVocabulary:
    """Trains a SentencePiece model on ``texts`` (an iterable of documents) and returns it.

    T5's ids (pad 0, eos 1, unk 2, no bos), so seqio's converters and EOS handling work as with
    T5's own vocabularies. Code needs its text back exactly, so: no normalization, whitespace
    kept (runs of spaces may be pieces), newline and tab as pieces of their own, and byte
    fallback so any character the corpus lacks still round-trips. The model is written through
    ``next_jax.io`` (local or gs://).
    """
    import sentencepiece as spm  # deferred: only training a vocabulary needs it

    buffer = io.BytesIO()
    documents = (t[:max_text_chars] for t in texts if t)
    spm.SentencePieceTrainer.train(
        sentence_iterator=documents, model_writer=buffer, vocab_size=vocab_size, model_type=model_type,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_by_whitespace=False, allow_whitespace_only_pieces=True, user_defined_symbols=["\n", "\t"],
        character_coverage=1.0, max_sentence_length=max_text_chars * 4, minloglevel=2,
        **T5_SPECIAL_IDS)
    nj_io.write_bytes(model_path, buffer.getvalue())
    return seqio.SentencePieceVocabulary(model_path, extra_ids=extra_ids)


def task_texts(paths) -> Iterator[str]:
    """The text of every task in RepairTask/TracedTask files: spec, code, tests, traces, fix."""
    for path in paths:
        for task in read_tasks(path):
            yield task.description
            yield task.buggy_code + "\n" + "\n".join(task.tests)
            for trace in getattr(task, "traces", ()):
                yield trace.traced_code
            if task.reference_fix:
                yield task.reference_fix
