"""The file layout of a dataset built by ``next_jax.data.build``: ``SPLIT-NNNNN-of-MMMMM.jsonl``
shards of TracedTask records and a ``stats.json`` naming the dataset and its splits.

The builder writes it; SeqIO task registration and the TFDS builder read it without importing the
builder (which brings the sandbox and the tracer).
"""

from __future__ import annotations

import json
from typing import List

from next_jax import io as nj_io


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}"


def split_files(out_dir: str, split: str) -> List[str]:
    """The shard files of one split of a built dataset, in order."""
    return nj_io.glob(nj_io.join(out_dir, f"{split}-?????-of-?????.jsonl"))


def read_stats(built_dir: str) -> dict:
    """The build's ``stats.json``; a directory without one is not a built dataset."""
    path = nj_io.join(built_dir, "stats.json")
    if not nj_io.exists(path):
        raise FileNotFoundError(f"{path}: not a built dataset (run python -m next_jax.data.build)")
    return json.loads(nj_io.read_text(path))
