"""The settings objects of the loop, each bound once in gin with ``@`` (or built in Python).

Paper defaults (NExT, Algorithm 1): hard problems are the training tasks whose base-model pass@1
from n = 32 samples is below m = 0.1; each iteration samples N = 32 answers per hard problem,
keeps those whose fix passes all the task's tests, and fine-tunes the BASE model on that
iteration's pairs only. Every other choice here is an option that defaults to the paper.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from next_jax.evaluation.runs import SamplingConfig
from next_jax.errors import UserValueError

DEDUP_MODES = ("none", "text", "fix")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """Choosing the hard problems D_H once, from the base model.

    Attributes:
      threshold: m; a task is hard when its estimated base pass@1 is below it. None = no selection
        (every training task is in D_H, and no selection samples are drawn).
      sampling: how the n samples per task are drawn (n = sampling.num_samples).
    """

    threshold: Optional[float] = 0.1
    sampling: SamplingConfig = SamplingConfig(num_samples=32)

    def __post_init__(self):
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise UserValueError(f"SelectionConfig.threshold must be in (0, 1] or None, got {self.threshold}")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Turning one iteration's passing samples into the training set B(i).

    Attributes:
      dedup: 'none' (paper), 'text' (identical answers once per problem) or 'fix' (answers whose
        fixed programs are the same after parsing once per problem).
      max_per_problem: keep at most this many pairs per problem (the first ones); None = all.
      accumulate: B(i) also holds the pairs of B(0..i-1) (the paper resets B every iteration).
      include_seed: add the seed set's (task, answer) pairs to every B(i).
      tests_field: the task's tests a fix must pass to be kept: 'tests' (those the prompt shows:
        MBPP-R and HeFix+, where the prompt shows every test) or 'eval_tests' (every test, where
        the prompt shows only some, so a fix that fits the shown test by coincidence is dropped).
    """

    dedup: str = "none"
    max_per_problem: Optional[int] = None
    accumulate: bool = False
    include_seed: bool = False
    tests_field: str = "tests"

    def __post_init__(self):
        if self.dedup not in DEDUP_MODES:
            raise UserValueError(f"BuildConfig.dedup must be one of {DEDUP_MODES}, got {self.dedup!r}")
        if self.tests_field not in ("tests", "eval_tests"):
            raise UserValueError(f"BuildConfig.tests_field must be 'tests' or 'eval_tests', got {self.tests_field!r}")
        if self.max_per_problem is not None and self.max_per_problem < 1:
            raise UserValueError(f"BuildConfig.max_per_problem must be None or >= 1, got {self.max_per_problem}")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning on B(i).

    The number of steps is ``num_steps`` when given, else ``ceil(epochs * |B(i)| / batch_size)``
    clipped to [min_steps, max_steps]: a larger B(i) gets proportionally more steps.

    Attributes:
      from_previous: start from the model of iteration i instead of the base model (the paper
        restarts from the base model every iteration).
      train_variant: the prompt variant of the training examples (None = the loop's variant).
      optimizer: an ``optimizers`` object (e.g. ``optimizers.AdamW(learning_rate=...)``); None =
        the trainer's default.
      checkpoint_period: steps between fine-tune checkpoints (a killed fine-tune resumes from the
        last one).
      summary_period, num_microbatches, pack: passed to the trainer.
    """

    num_steps: Optional[int] = None
    epochs: float = 2.0
    min_steps: int = 1
    max_steps: Optional[int] = None
    batch_size: int = 8
    from_previous: bool = False
    train_variant: Optional[str] = None
    optimizer: Any = None
    checkpoint_period: int = 100
    summary_period: int = 10
    num_microbatches: int = 1
    pack: bool = True

    def __post_init__(self):
        if self.num_steps is not None and self.num_steps < 1:
            raise UserValueError(f"FinetuneConfig.num_steps must be None or >= 1, got {self.num_steps}")
        if self.num_steps is None and not self.epochs > 0:
            raise UserValueError(f"FinetuneConfig.epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise UserValueError(f"FinetuneConfig.max_steps={self.max_steps} < min_steps={self.min_steps}")

    def steps_for(self, examples: int) -> int:
        if self.num_steps is not None:
            return self.num_steps
        steps = max(self.min_steps, math.ceil(self.epochs * examples / self.batch_size))
        return min(steps, self.max_steps) if self.max_steps is not None else steps
