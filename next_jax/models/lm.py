"""The language model around the flax Transformer: initialisation, the training loss, scoring.

``DecoderLM(config)`` is what the trainer and the evaluator hold (T5X's ``DecoderOnlyModel``):

- ``init_fn(rng)``: boxed variables with logical axes (for ``Partitioner.init`` / ``init_abstract``);
- ``loss_fn(params, batch, rng=None, normalizer=None) -> (loss, metrics)``: cross-entropy on the
  target tokens only, optional z-loss and label smoothing; ``metrics`` are *sums* (see
  ``summarize``) so microbatches and devices add up exactly;
- ``score_batch(params, batch)``: per-example log-likelihood of the targets.

Batches are the output of SeqIO's decoder-only feature converters (``decoder_target_tokens``,
``decoder_loss_weights`` and, when packed, ``decoder_segment_ids`` / ``decoder_positions``). The
model reads ``decoder_target_tokens`` (prompt followed by answer) and learns token ``t+1`` from
tokens ``0..t`` of the same segment, weighted by the converter's loss weight of token ``t+1``. This
is exactly how the sampler uses the model (prompt tokens as encoded, next token predicted after
the last one), so no shifted-in 0 token is seen in training that inference never feeds; SeqIO's
``decoder_input_tokens`` are therefore not used. A segment's first token is never a target (it
starts the prompt), so nothing is lost.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple

import jax
import jax.numpy as jnp

from next_jax.models.config import ModelConfig
from next_jax.models.transformer import Transformer, init_variables

Array = jax.Array

# Metric sums every loss_fn returns; ``summarize`` turns them into means.
METRIC_SUMS = ("loss_sum", "cross_entropy_sum", "z_loss_sum", "correct", "weight")


def next_token_targets(batch: Mapping[str, Array]) -> Tuple[Array, Array, Optional[Array], Array, Array]:
    """(tokens, positions, segment_ids or None, labels, weights) of a converter batch.

    ``labels[:, t]`` is token ``t+1``; ``weights[:, t]`` its loss weight, zero where token ``t+1``
    starts another segment or lies past the end.
    """
    tokens = batch["decoder_target_tokens"]
    weights_in = batch.get("decoder_loss_weights")
    if weights_in is None:
        weights_in = (tokens > 0).astype(jnp.float32)
    segment_ids = batch.get("decoder_segment_ids")
    positions = batch.get("decoder_positions")
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    pad = jnp.zeros_like(tokens[:, :1])
    labels = jnp.concatenate([tokens[:, 1:], pad], axis=1)
    weights = jnp.concatenate([weights_in[:, 1:], jnp.zeros_like(weights_in[:, :1])], axis=1).astype(jnp.float32)
    if segment_ids is not None:
        same = segment_ids[:, 1:] == segment_ids[:, :-1]
        weights = weights * jnp.concatenate([same, jnp.zeros_like(same[:, :1])], axis=1)
    return tokens, positions, segment_ids, labels, weights


def cross_entropy(logits: Array, labels: Array, *, z_loss: float = 0.0,
                  label_smoothing: float = 0.0) -> Tuple[Array, Array, Array, Array]:
    """(loss, cross entropy, z-loss term, correct) per position, float32, without a one-hot [.., V]
    tensor.

    With label smoothing the target puts ``1 - s`` on the label and ``s / (V - 1)`` on every other
    token; the constant entropy of that target is subtracted so a perfect model scores 0.
    ``z_loss * log(Z)**2`` keeps the softmax normaliser near 1 (PaLM's auxiliary loss).
    ``correct`` is 1.0 where the label's logit is the largest: the row maximum that keeps the
    normaliser in range serves for it too, where an argmax would be one more pass over the
    [.., V] logits (on a CPU as long as the softmax itself). A label that ties another token for
    the maximum counts as correct.
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
    log_z = top + jnp.log(jnp.sum(jnp.exp(logits - top[..., None]), axis=-1))
    label_logit = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    nll = log_z - label_logit
    if label_smoothing:
        on, off = 1.0 - label_smoothing, label_smoothing / (vocab - 1)
        # -sum_v target_v * log p_v = (on - off) * nll + off * sum_v (log_z - logit_v)
        mean_neg_logp = vocab * log_z - jnp.sum(logits, axis=-1)
        entropy = -(on * jnp.log(on) + (vocab - 1) * off * jnp.log(off + 1e-20))
        ce = (on - off) * nll + off * mean_neg_logp - entropy
    else:
        ce = nll
    z_term = z_loss * jnp.square(log_z) if z_loss else jnp.zeros_like(ce)
    correct = (label_logit >= top).astype(jnp.float32)
    return ce + z_term, ce, z_term, correct


def summarize(sums: Mapping[str, Array]) -> dict:
    """Means per target token from ``loss_fn``'s metric sums (accepts arrays or floats)."""
    weight = jnp.maximum(sums["weight"], 1e-9)
    return {
        "loss": sums["loss_sum"] / weight,
        "cross_entropy": sums["cross_entropy_sum"] / weight,
        "z_loss": sums["z_loss_sum"] / weight,
        "accuracy": sums["correct"] / weight,
        "target_tokens": sums["weight"],
    }


@dataclasses.dataclass(frozen=True)
class DecoderLM:
    """A decoder-only language model: the Transformer plus its loss.

    Attributes:
      config: the architecture (the gin MODEL).
      z_loss: weight of the log(Z)**2 auxiliary loss (0 = off; T5X uses 1e-4).
      label_smoothing: probability mass spread over the other tokens (0 = off).
    """

    config: ModelConfig
    z_loss: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self):
        if not isinstance(self.config, ModelConfig):
            raise TypeError(f"DecoderLM.config must be a ModelConfig, got {type(self.config).__name__}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"DecoderLM.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.z_loss < 0:
            raise ValueError(f"DecoderLM.z_loss must be >= 0, got {self.z_loss}")

    @property
    def module(self) -> Transformer:
        return Transformer(self.config)

    def init_fn(self, rng: Array) -> dict:
        """Boxed variables (parameters with their logical axes)."""
        return init_variables(self.config, rng)

    def logits(self, params, batch: Mapping[str, Array]) -> Array:
        tokens, positions, segment_ids, _, _ = next_token_targets(batch)
        return self.module.apply({"params": params}, tokens, positions, segment_ids)

    def loss_fn(self, params, batch: Mapping[str, Array], rng: Optional[Array] = None,
                normalizer: Optional[Array] = None) -> Tuple[Array, dict]:
        """(loss, metric sums); loss = weighted sum / ``normalizer`` (default: this batch's weights).

        A caller that splits a batch into microbatches passes the whole batch's weight sum as
        ``normalizer`` so the accumulated gradient equals the full batch's.
        """
        del rng  # the model has no stochastic layers; the argument keeps the trainer's contract
        tokens, positions, segment_ids, labels, weights = next_token_targets(batch)
        logits = self.module.apply({"params": params}, tokens, positions, segment_ids)
        loss, ce, z_term, correct = cross_entropy(logits, labels, z_loss=self.z_loss,
                                                  label_smoothing=self.label_smoothing)
        total = jnp.sum(loss * weights)
        if normalizer is None:
            normalizer = jnp.maximum(jnp.sum(weights), 1.0)
        metrics = {
            "loss_sum": total,
            "cross_entropy_sum": jnp.sum(ce * weights),
            "z_loss_sum": jnp.sum(z_term * weights),
            "correct": jnp.sum(correct * weights),
            "weight": jnp.sum(weights),
        }
        return total / normalizer, metrics

    def score_batch(self, params, batch: Mapping[str, Array]) -> Array:
        """[B] sum of log p(target token) over each row's weighted positions (unpacked batches)."""
        tokens, positions, segment_ids, labels, weights = next_token_targets(batch)
        logits = self.module.apply({"params": params}, tokens, positions, segment_ids).astype(jnp.float32)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[..., None].astype(jnp.int32), -1)
        return jnp.sum(logp[..., 0] * weights, axis=-1)


def as_lm(model) -> DecoderLM:
    """The language model of an entry function's ``model`` argument: a DecoderLM, or a bare ModelConfig."""
    if isinstance(model, DecoderLM):
        return model
    if isinstance(model, ModelConfig):
        return DecoderLM(model)
    raise TypeError(f"model must be a DecoderLM or a ModelConfig, got {type(model).__name__}")
