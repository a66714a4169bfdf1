"""Full-sequence attention with grouped-query heads, in three interchangeable implementations.

- ``'xla'``: queries in blocks of 128 (one block below 256 tokens), each block against all the keys
  up to its own end: the keys after it are invisible by causality, so about half of the [T, S]
  scores are never computed. The fastest for training rows of hundreds of tokens.
- ``'chunked'``: queries are processed ``chunk_size`` at a time (a ``lax.map``), so no more than
  [chunk, S] scores (and masks) exist at once, also in the backward pass under remat. NExT prompts
  with traces run to several thousand tokens, where the plain [T, S] scores of every head no
  longer fit. Each query chunk sees all keys at once, so the result equals the plain one (same
  softmax, no online rescaling).
- ``'fused'``: ``jax.nn.dot_product_attention``, which uses a fused kernel (cuDNN flash attention)
  where the backend has one and XLA otherwise. It has no logit soft-capping, so configurations
  with ``attn_logit_softcap`` fall back to ``'xla'``.

Visibility is computed per block from token indices, positions and segment ids: causal by index,
within the same packed segment, and within ``window`` positions for sliding-window layers.
Queries arrive scaled. Scores and the softmax are float32; with bfloat16 compute the two matrix
products read bfloat16 and accumulate in float32 (XLA:CPU's fast path for bfloat16).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array
IMPLEMENTATIONS = ("xla", "chunked", "fused")


def visibility(q_index: Array, k_index: Array, q_pos: Array, k_pos: Array, q_seg: Optional[Array],
               k_seg: Optional[Array], window: Optional[int]) -> Array:
    """[B, Tq, S] booleans: key s is visible from query t."""
    visible = (q_index[:, None] >= k_index[None, :])[None]
    if q_seg is not None:
        visible = visible & (q_seg[:, :, None] == k_seg[:, None, :])
    if window is not None:
        visible = visible & ((q_pos[:, :, None] - k_pos[:, None, :]) < window)
    return jnp.broadcast_to(visible, (q_pos.shape[0],) + visible.shape[1:])


def _attend_heads(q, k, v, visible, softcap):
    """Head-major attention: q [B, K, Tq, G, D], k/v [B, K, S, D], visible [B, Tq, S] ->
    [B, K, Tq, G, D] float32.

    Queries of a group share their keys, so they run as the rows (t, g) of one [Tq*G, S] product
    per (batch, kv head): every product, forward and backward, has its batch axes (B, K) first
    and contracts a single axis. (Written as einsums over token-major [B, T, K, G, D], the backward
    products for dk and dv contract (G, T) together, and XLA:CPU canonicalises them by copying
    the score gradients transposed, copies as large as the scores, every layer.)

    The softmax normalisation is applied to the [rows, D] output rather than to the [rows, S]
    weights: one pass over the scores fewer, forward and backward.
    """
    f32 = jnp.float32
    compute = q.dtype if q.dtype == jnp.bfloat16 else f32
    batch, kv_heads, length, groups, head_dim = q.shape
    heads_batch = ((0, 1), (0, 1))
    rows = q.reshape(batch, kv_heads, length * groups, head_dim).astype(compute)
    scores = jax.lax.dot_general(rows, k.astype(compute), (((3,), (3,)), heads_batch),
                                 preferred_element_type=f32)  # [B, K, Tq*G, S]
    if softcap is not None:
        scores = softcap * jnp.tanh(scores / softcap)
    mask = jnp.broadcast_to(visible[:, None, :, None], (batch, 1, length, groups, visible.shape[-1]))
    scores = jnp.where(mask.reshape(batch, 1, length * groups, -1), scores, jnp.finfo(f32).min)
    # The maximum only keeps exp() in range; the result does not depend on it.
    top = jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
    weights = jnp.exp(scores - top)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    out = jax.lax.dot_general(weights.astype(compute), v.astype(compute), (((3,), (2,)), heads_batch),
                              preferred_element_type=f32)  # [B, K, Tq*G, D]
    return (out / total).reshape(batch, kv_heads, length, groups, head_dim)


def _to_heads(q, k, v):
    """[B, T, K, G, D] queries and [B, S, K, D] keys/values -> head-major (see ``_attend_heads``)."""
    return jnp.transpose(q, (0, 2, 1, 3, 4)), jnp.transpose(k, (0, 2, 1, 3)), jnp.transpose(v, (0, 2, 1, 3))


def _plain(q, k, v, visible, softcap):
    """q [B, Tq, K, G, D], k/v [B, S, K, D], visible [B, Tq, S] -> [B, Tq, K, G, D] float32."""
    return jnp.transpose(_attend_heads(*_to_heads(q, k, v), visible, softcap), (0, 2, 1, 3, 4))


def causal_block_size(length: int) -> int:
    """Query rows per block of the ``'xla'`` implementation (the whole row below 256 tokens)."""
    return length if length < 256 else 128


def _causal_blocks(q, k, v, positions, segment_ids, window, softcap):
    """Self-attention of q [B, T, K, G, D] over k, v [B, T, K, D], block by block of queries.

    Causality makes every key after a query block's last token invisible to it, so block i
    attends to keys [0, end of block i) only: about half the products and half the softmax work
    of the full [T, T] scores. Each block still sees all of its keys at once, so the result is
    the plain softmax, exactly.
    """
    length = q.shape[1]
    block = causal_block_size(length)
    index = jnp.arange(length)
    qh, kh, vh = _to_heads(q, k, v)

    def tokens(x, start, stop):  # [B, T] -> [B, stop - start]; None stays None
        return None if x is None else x[:, start:stop]

    outs = []
    for start in range(0, length, block):
        stop = min(start + block, length)
        visible = visibility(index[start:stop], index[:stop], tokens(positions, start, stop),
                             tokens(positions, 0, stop), tokens(segment_ids, start, stop),
                             tokens(segment_ids, 0, stop), window)
        outs.append(_attend_heads(qh[:, :, start:stop], kh[:, :, :stop], vh[:, :, :stop], visible, softcap))
    out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)
    return jnp.transpose(out, (0, 2, 1, 3, 4))


def attend(q: Array, k: Array, v: Array, positions: Array, segment_ids: Optional[Array], *,
           window: Optional[int] = None, softcap: Optional[float] = None, impl: str = "xla",
           chunk_size: int = 512) -> Array:
    """Attention of scaled queries q [B, T, H, D] over k, v [B, T, K, D]; returns [B, T, H, D] float32."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {impl!r} is not one of {IMPLEMENTATIONS}")
    batch, length, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    groups = heads // kv_heads
    index = jnp.arange(length)
    if impl == "fused" and softcap is None:
        mask = visibility(index, index, positions, positions, segment_ids, segment_ids, window)
        out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=1.0)
        return out.astype(jnp.float32)
    q = q.reshape(batch, length, kv_heads, groups, head_dim)
    if impl != "chunked" or length <= chunk_size:
        return _causal_blocks(q, k, v, positions, segment_ids, window, softcap).reshape(batch, length, heads, head_dim)

    chunks = -(-length // chunk_size)
    padded = chunks * chunk_size
    pad = padded - length

    def split(x):  # [B, T, ...] -> [chunks, B, chunk, ...] (queries past the end are dropped later)
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        return jnp.moveaxis(x.reshape((batch, chunks, chunk_size) + x.shape[2:]), 1, 0)

    q_index = jnp.arange(padded).reshape(chunks, chunk_size)
    xs = (split(q), q_index, split(positions), split(segment_ids) if segment_ids is not None else None)

    def one(inputs):
        q_chunk, qi, q_pos, q_seg = inputs
        mask = visibility(qi, index, q_pos, positions, q_seg, segment_ids, window)
        return _plain(q_chunk, k, v, mask, softcap)

    out = jax.lax.map(one, xs)  # [chunks, B, chunk, K, G, D]
    out = jnp.moveaxis(out, 0, 1).reshape(batch, padded, heads, head_dim)
    return out[:, :length]
