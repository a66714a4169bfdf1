"""Attention implementations and remat: the same logits and gradients as the plain model, and the
chunked one really keeps less in memory for long rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from next_jax.models import ModelConfig, Transformer, attention, init_params

BASE = dict(vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=48)
CONFIGS = {
    "llama": ModelConfig(**BASE),
    "gemma2": ModelConfig(**BASE, sliding_window=5, global_layer_period=2, attn_logit_softcap=5.0,
                          use_post_norms=True, mlp_activation="gelu_tanh"),
}


def _packed_batch(length=37):
    tokens = jax.random.randint(jax.random.key(1), (2, length), 3, 96)
    split = 20
    segments = jnp.concatenate([jnp.ones((2, split), jnp.int32), 2 * jnp.ones((2, length - split), jnp.int32)], 1)
    positions = jnp.concatenate([jnp.arange(split), jnp.arange(length - split)])[None].repeat(2, 0)
    return tokens, positions, segments


def _loss(config):
    def loss(params, tokens, positions, segments):
        logits = Transformer(config).apply({"params": params}, tokens, positions, segments)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[..., None], -1)[..., 0])

    return jax.jit(jax.value_and_grad(loss))


@pytest.mark.parametrize("family,variant", [
    ("llama", dict(attention_impl="chunked", attention_chunk_size=8)),
    ("gemma2", dict(attention_impl="chunked", attention_chunk_size=8)),
    ("llama", dict(attention_impl="fused")),
    ("gemma2", dict(remat_policy="dots", attention_impl="chunked", attention_chunk_size=16)),
    ("llama", dict(remat_policy="full")),
])
@pytest.mark.heavy
def test_variants_compute_the_plain_model(family, variant):
    config = CONFIGS[family]
    params = init_params(config, jax.random.key(0))
    batch = _packed_batch()
    ref_loss, ref_grads = _loss(config)(params, *batch)
    loss, grads = _loss(config.replace(**variant))(params, *batch)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), grads, ref_grads)


@pytest.mark.heavy
def test_chunked_attention_needs_far_less_memory_on_long_rows():
    config = ModelConfig(**{**BASE, "num_layers": 1})
    params = init_params(config, jax.random.key(0))
    tokens, positions = jnp.zeros((1, 2048), jnp.int32), jnp.arange(2048)[None]

    def temp_bytes(c):
        fn = jax.jit(lambda p: Transformer(c).apply({"params": p}, tokens, positions))
        return fn.lower(params).compile().memory_analysis().temp_size_in_bytes

    plain = temp_bytes(config)
    chunked = temp_bytes(config.replace(attention_impl="chunked", attention_chunk_size=128))
    scores = 4 * config.num_heads * 2048 * 2048  # one float32 [heads, T, S] score tensor
    # The plain implementation skips the key blocks after each query block: it keeps about the
    # lower half of the scores, the chunked one a [chunk, S] slice at a time.
    assert plain >= scores / 2
    assert chunked < scores / 4


def _reference_attention(q, k, v, positions, segments, window, softcap):
    """Every score of [T, S], masked: the definition the blocked implementation must match."""
    batch, length, heads, dim = q.shape
    groups = heads // k.shape[2]
    k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
    scores = jnp.einsum("bthd,bshd->bhts", q, k)
    if softcap is not None:
        scores = softcap * jnp.tanh(scores / softcap)
    index = jnp.arange(length)
    visible = (index[:, None] >= index[None, :])[None] & (segments[:, :, None] == segments[:, None, :])
    if window is not None:
        visible = visible & (positions[:, :, None] - positions[:, None, :] < window)
    scores = jnp.where(visible[:, None], scores, -1e30)
    return jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, -1), v)


@pytest.mark.parametrize("window,softcap", [(None, None), (40, None), (None, 5.0)])
@pytest.mark.heavy
def test_causal_blocks_equal_the_full_scores(window, softcap):
    # 300 tokens: three query blocks of 128 (the last one partial), two packed segments.
    length = 300
    assert attention.causal_block_size(length) < length
    keys = jax.random.split(jax.random.key(3), 3)
    q = jax.random.normal(keys[0], (2, length, 4, 8))
    k, v = (jax.random.normal(key, (2, length, 2, 8)) for key in keys[1:])
    segments = jnp.concatenate([jnp.ones((2, 170), jnp.int32), 2 * jnp.ones((2, length - 170), jnp.int32)], 1)
    positions = jnp.concatenate([jnp.arange(170), jnp.arange(length - 170)])[None].repeat(2, 0)

    def blocked(q, k, v):
        return attention.attend(q, k, v, positions, segments, window=window, softcap=softcap)

    def reference(q, k, v):
        return _reference_attention(q, k, v, positions, segments, window, softcap)

    np.testing.assert_allclose(blocked(q, k, v), reference(q, k, v), atol=1e-5)
    cotangent = jax.random.normal(jax.random.key(4), q.shape)
    grads = jax.vjp(blocked, q, k, v)[1](cotangent)
    ref_grads = jax.vjp(reference, q, k, v)[1](cotangent)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_config_rejects_unknown_settings():
    with pytest.raises(ValueError, match="attention_impl"):
        ModelConfig(**BASE, attention_impl="flash")
    with pytest.raises(ValueError, match="remat_policy"):
        ModelConfig(**BASE, remat_policy="some")
