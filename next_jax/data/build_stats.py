"""Counts and length distributions of a dataset build, per shard and merged into ``stats.json``.

A shard's stats are written beside it when it finishes, so a resumed build merges the stats of
shards built earlier with the new ones and ``stats.json`` always describes every shard. Lengths
are kept as raw lists per shard (a few numbers per task) and turned into percentiles only when
merged.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from next_jax import io as nj_io

PERCENTILES = (50, 90, 95, 99, 100)
_CODE_TOKEN = re.compile(r"\w+|[^\w\s]")


class Stats:
    """Counters (``add``), example lists (``note``, capped) and length samples (``length``)."""

    MAX_NOTES = 200

    def __init__(self):
        self.counts: Dict[str, int] = collections.Counter()
        self.notes: Dict[str, list] = collections.defaultdict(list)
        self.lengths: Dict[str, List[int]] = collections.defaultdict(list)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def note(self, key: str, item) -> None:
        self.add(f"{key}_total")
        if len(self.notes[key]) < self.MAX_NOTES:
            self.notes[key].append(item)

    def length(self, key: str, value: int) -> None:
        self.lengths[key].append(int(value))

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "notes": dict(self.notes), "lengths": dict(self.lengths)}

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        stats = cls()
        stats.counts.update(d.get("counts", {}))
        for key, items in d.get("notes", {}).items():
            stats.notes[key].extend(items)
        for key, values in d.get("lengths", {}).items():
            stats.lengths[key].extend(values)
        return stats

    def merge(self, other: "Stats") -> None:
        self.counts.update(other.counts)
        for key, items in other.notes.items():
            self.notes[key].extend(items[: max(0, self.MAX_NOTES - len(self.notes[key]))])
        for key, values in other.lengths.items():
            self.lengths[key].extend(values)


def percentiles(values: Sequence[int], points: Iterable[int] = PERCENTILES) -> dict:
    """Nearest-rank percentiles (``p100`` is the maximum); empty input gives an empty dict."""
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in points}
    out["mean"] = round(sum(ordered) / len(ordered), 1)
    out["n"] = len(ordered)
    return out


def overflow(values: Sequence[int], limit: Optional[int]) -> dict:
    """How many lengths exceed ``limit`` and by how much (what a feature length would cut)."""
    if not limit:
        return {}
    over = [v - limit for v in values if v > limit]
    return {"limit": limit, "over": len(over), "of": len(values),
            "max_over": max(over, default=0),
            "mean_over": round(sum(over) / len(over), 1) if over else 0.0}


def nested(counts: Dict[str, int]) -> dict:
    """``{"a/b": 1, "a/c": 2, "d": 3}`` -> ``{"a": {"b": 1, "c": 2}, "d": 3}`` (sorted keys)."""
    out: dict = {}
    for key in sorted(counts):
        node = out
        parts = key.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = counts[key]
    return out


def regex_token_count(text: str) -> int:
    """Words and single punctuation marks: a vocabulary-free stand-in for a code tokenizer."""
    return len(_CODE_TOKEN.findall(text))


def token_counter(sentencepiece_model: Optional[str] = None) -> Callable[[str], int]:
    """Token counts from a SentencePiece model file if given, else :func:`regex_token_count`."""
    if not sentencepiece_model:
        return regex_token_count
    import sentencepiece as spm  # deferred: only token counts against a vocabulary file need it

    processor = spm.SentencePieceProcessor(model_proto=nj_io.read_bytes(sentencepiece_model))
    return lambda text: len(processor.encode(text))
