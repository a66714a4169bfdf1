"""Which model, with which weights, on which devices: the values every stage that loads a model
takes together.

A ``ModelRef`` travels as one object from the run file (gin binds it once) to every entry
function and stage that samples, trains or scores a model, instead of six loose arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """model: the architecture (a ``ModelConfig``, the gin MODEL, or a module/LM carrying one in
    ``.config``); vocabulary: the seqio vocabulary of its tokens; task_feature_lengths: e.g.
    ``{'inputs': 1536, 'targets': 512}`` (prompts longer than 'inputs' keep their end); checkpoint:
    a Hugging Face directory, an orbax checkpoint, or None for random weights from ``init_seed``;
    partitioner: the device layout (None: every device, data parallel)."""

    model: Any
    vocabulary: Any
    task_feature_lengths: Mapping[str, int]
    checkpoint: Optional[str] = None
    init_seed: int = 0
    partitioner: Any = None

    def replace(self, **changes) -> "ModelRef":
        return dataclasses.replace(self, **changes)
