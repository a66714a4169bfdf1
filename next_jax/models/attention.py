"""Full-sequence attention with grouped-query heads, in three interchangeable implementations.

- ``'xla'``: scores [B, kv_heads, groups, T, S] in one piece: the simplest and, for short rows,
  the fastest.
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


def _plain(q, k, v, visible, softcap):
    """q [B, Tq, K, G, D], k/v [B, S, K, D], visible [B, Tq, S] -> [B, Tq, K, G, D] float32."""
    f32 = jnp.float32
    compute = q.dtype if q.dtype == jnp.bfloat16 else f32
    scores = jnp.einsum("btkgd,bskd->bkgts", q.astype(compute), k.astype(compute), preferred_element_type=f32)
    if softcap is not None:
        scores = softcap * jnp.tanh(scores / softcap)
    scores = jnp.where(visible[:, None, None], scores, jnp.finfo(f32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bkgts,bskd->btkgd", probs.astype(compute), v.astype(compute), preferred_element_type=f32)


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
        mask = visibility(index, index, positions, positions, segment_ids, segment_ids, window)
        return _plain(q, k, v, mask, softcap).reshape(batch, length, heads, head_dim)

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
