"""Rotary position embeddings (RoPE) and the frequency scalings of Llama 3, Qwen2 and Gemma 2.

Layout is Hugging Face's "rotate half": dimension i of a head pairs with dimension i + head_dim/2,
so q/k projection kernels import from HF checkpoints without permuting their rows.

The frequencies depend only on the config, so they are computed once on the host (numpy, float32
like transformers) and baked into the compiled program as constants.
"""

from __future__ import annotations

import math
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from next_jax.models.config import ModelConfig


def inverse_frequencies(config: ModelConfig) -> Tuple[np.ndarray, float]:
    """(inverse frequencies [head_dim // 2] float32, factor applied to cos and sin)."""
    dim = config.head_dim
    exponents = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    inv_freq = (np.float32(1.0) / np.power(np.float32(config.rope_theta), exponents)).astype(np.float32)
    scaling = dict(config.rope_scaling or {})
    kind = scaling.get("rope_type", "default")
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return (inv_freq / np.float32(scaling["factor"])).astype(np.float32), 1.0
    if kind == "llama3":
        return _llama3(inv_freq, scaling), 1.0
    if kind == "yarn":
        return _yarn(config, scaling)
    raise ValueError(f"unsupported rope_type {kind!r}")


def _llama3(inv_freq: np.ndarray, s: dict) -> np.ndarray:
    """Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, a smooth blend between."""
    factor = s["factor"]
    low, high = s["low_freq_factor"], s["high_freq_factor"]
    old_len = s["original_max_position_embeddings"]
    wavelen = (2 * math.pi) / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, blended, scaled).astype(np.float32)


def _yarn(config: ModelConfig, s: dict) -> Tuple[np.ndarray, float]:
    """YaRN (Qwen2.5's long-context recipe): per-dimension blend of interpolated and original
    frequencies, plus a temperature on the attention logits folded into cos/sin."""
    dim, base = config.head_dim, config.rope_theta
    factor = s["factor"]
    old_len = s["original_max_position_embeddings"]
    beta_fast = s.get("beta_fast") or 32
    beta_slow = s.get("beta_slow") or 1

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = s.get("attention_factor")
    if attention_factor is None:
        if s.get("mscale") and s.get("mscale_all_dim"):
            attention_factor = mscale(factor, s["mscale"]) / mscale(factor, s["mscale_all_dim"])
        else:
            attention_factor = mscale(factor)

    def correction_dim(rotations):
        return dim * math.log(old_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)
    keep_original = 1 - ramp
    pos_freqs = np.power(np.float32(base), np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
    inv_extra = 1.0 / pos_freqs
    inv_inter = 1.0 / (factor * pos_freqs)
    inv_freq = inv_inter * (1 - keep_original) + inv_extra * keep_original
    return inv_freq.astype(np.float32), float(attention_factor)


def rotary_tables(positions: jnp.ndarray, config: ModelConfig) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """cos and sin [..., head_dim] for integer ``positions`` [...], computed in float32.

    The tables are computed once per call and kept: without the barrier XLA fuses cos() and
    sin() into every consumer, recomputing them for each head of q and k in every layer, forward
    and backward.
    """
    inv_freq, attention_factor = inverse_frequencies(config)
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jax.lax.optimization_barrier((jnp.cos(angles) * attention_factor, jnp.sin(angles) * attention_factor))


def _rotate_half(x: jnp.ndarray, sign: float) -> jnp.ndarray:
    """[x1, x2] -> [-x2, x1] (sign 1) or its transpose [x2, -x1] (sign -1), halves of the last axis."""
    half = x.shape[-1] // 2
    return jnp.concatenate([-sign * x[..., half:], sign * x[..., :half]], axis=-1)


@jax.custom_vjp
def _rotary(x, cos, sin):
    out = x.astype(jnp.float32) * cos + _rotate_half(x, 1.0).astype(jnp.float32) * sin
    return out.astype(x.dtype)


def _rotary_fwd(x, cos, sin):
    return _rotary(x, cos, sin), (cos, sin)


def _rotary_bwd(residuals, g):
    # The rotation is linear in x: its transpose is one elementwise expression, where autodiff
    # of the slices and concatenation would give pads and adds in several passes.
    cos, sin = residuals
    g32 = g.astype(jnp.float32)
    return (g32 * cos + _rotate_half(g32 * sin, -1.0)).astype(g.dtype), None, None


_rotary.defvjp(_rotary_fwd, _rotary_bwd)


def apply_rotary(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """Rotates ``x`` [batch, length, heads, head_dim] by cos/sin [batch, length, head_dim]."""
    return _rotary(x, cos[..., None, :], sin[..., None, :])
