"""Optimizers for training, from optax, as small frozen settings objects gin binds once.

    OPTIMIZER = @optimizers.AdamW()
    optimizers.AdamW.weight_decay = 0.01
    optimizers.Schedule:
      peak = 1e-3
      warmup_steps = 100
      decay = 'cosine'

``make(total_steps)`` returns an :class:`Optimizer`: the optax ``GradientTransformation`` (global
norm clipping first, then the update rule scaled by the schedule) and the schedule itself, which
the trainer evaluates to log the learning rate. Weight decay applies to matrices only (ndim >= 2):
norm scales and biases are left alone, as in most LLM recipes.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import optax

from next_jax.models import stacking

DECAYS = ("constant", "linear", "cosine", "rsqrt")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then ``decay`` down to
    ``peak * end_fraction`` at ``decay_steps`` (default: the run's total steps).

    'rsqrt' decays as ``peak * sqrt(warmup / step)`` (T5's schedule) and ignores the end value.
    """

    peak: float = 1e-3
    warmup_steps: int = 0
    decay: str = "cosine"
    decay_steps: Optional[int] = None
    end_fraction: float = 0.0

    def __post_init__(self):
        if self.decay not in DECAYS:
            raise ValueError(f"Schedule.decay must be one of {DECAYS}, got {self.decay!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"Schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.peak > 0:
            raise ValueError(f"Schedule.peak must be > 0, got {self.peak}")

    def make(self, total_steps: int) -> optax.Schedule:
        total = int(self.decay_steps or total_steps)
        warmup = min(self.warmup_steps, total)
        end = self.peak * self.end_fraction
        rest = max(total - warmup, 1)
        if self.decay == "constant":
            after = optax.constant_schedule(self.peak)
        elif self.decay == "linear":
            after = optax.linear_schedule(self.peak, end, rest)
        elif self.decay == "cosine":
            after = optax.cosine_decay_schedule(self.peak, rest, alpha=self.end_fraction)
        else:
            base = max(warmup, 1)
            after = lambda count: self.peak * jax.numpy.sqrt(base / (count + base))  # noqa: E731
        if warmup == 0:
            return after
        return optax.join_schedules([optax.linear_schedule(0.0, self.peak, warmup), after], [warmup])


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """What ``make`` returns: the transformation and the learning-rate schedule it uses."""

    tx: optax.GradientTransformation
    learning_rate: Callable


def _matrices(params):
    """True for matrices; a stacked layer parameter (scanned layers) counts without its layer axis,
    so a stacked norm scale is not decayed and both layouts train alike."""

    def one(path, p):
        stacked = bool(path) and getattr(path[0], "key", None) == stacking.STACKED
        return getattr(p, "ndim", 0) - int(stacked) >= 2

    return jax.tree_util.tree_map_with_path(one, params)


def _chain(clip_norm: Optional[float], *transforms) -> optax.GradientTransformation:
    parts = ([optax.clip_by_global_norm(clip_norm)] if clip_norm else []) + list(transforms)
    return optax.chain(*parts)


@dataclasses.dataclass(frozen=True)
class AdamW:
    """optax AdamW with decoupled weight decay on matrices and global-norm clipping."""

    learning_rate: Schedule = Schedule()
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: Optional[float] = 1.0

    def make(self, total_steps: int) -> Optimizer:
        schedule = self.learning_rate.make(total_steps)
        tx = _chain(
            self.clip_norm,
            optax.adamw(schedule, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay,
                        mask=_matrices),
        )
        return Optimizer(tx, schedule)


@dataclasses.dataclass(frozen=True)
class Adafactor:
    """optax Adafactor (factored second moments: memory ~ rows + columns per matrix).

    Unlike AdamW it is not indifferent to ``ModelConfig.scan_layers``: parameter scaling and update
    clipping take the RMS of a whole array, which for stacked layers spans every layer, so the
    two layouts train slightly differently (factoring itself keeps the layer axis apart as long as
    it is shorter than the matrix dimensions).
    """

    learning_rate: Schedule = Schedule(peak=1e-2, decay="rsqrt", warmup_steps=100)
    decay_rate: float = 0.8
    clipping_threshold: Optional[float] = 1.0
    momentum: Optional[float] = None
    weight_decay: float = 0.0
    multiply_by_parameter_scale: bool = True
    clip_norm: Optional[float] = None

    def make(self, total_steps: int) -> Optimizer:
        schedule = self.learning_rate.make(total_steps)
        tx = _chain(
            self.clip_norm,
            optax.adafactor(
                schedule, decay_rate=self.decay_rate, clipping_threshold=self.clipping_threshold,
                momentum=self.momentum, weight_decay_rate=self.weight_decay or None,
                weight_decay_mask=_matrices if self.weight_decay else None,
                multiply_by_parameter_scale=self.multiply_by_parameter_scale,
            ),
        )
        return Optimizer(tx, schedule)
