"""The transformer: parameter names and logical axes, KV-cache decoding against full recomputation,
packing, rotary scalings against transformers' own formulas, config validation, and the same
logits on 1 device and on 8 fake devices in several mesh shapes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from next_jax import partitioning
from next_jax.models import ModelConfig, Transformer, count_params, init_params
from next_jax.models.rotary import inverse_frequencies

BASE = dict(vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=48)

FAMILIES = {
    "llama": ModelConfig(**BASE, norm_eps=1e-5, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}),
    "qwen2": ModelConfig(**BASE, qkv_bias=True, tie_embeddings=True, rope_theta=1e6),
    "gemma2": ModelConfig(
        **{**BASE, "num_layers": 3}, mlp_activation="gelu_tanh", tie_embeddings=True, embed_scale=True,
        query_pre_attn_scalar=16.0, attn_logit_softcap=5.0, final_logit_softcap=3.0, sliding_window=3,
        global_layer_period=2, use_post_norms=True),
    "mqa_yarn": ModelConfig(**{**BASE, "num_kv_heads": 1}, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}),
}

CONTRACT_AXES = {
    "token_embed/embedding": ("vocab", "embed"),
    "layers_0/pre_attn_norm/scale": ("norm",),
    "layers_0/attn/q_proj/kernel": ("embed", "heads", "head_dim"),
    "layers_0/attn/q_proj/bias": ("heads", "head_dim"),
    "layers_0/attn/k_proj/kernel": ("embed", "kv_heads", "head_dim"),
    "layers_0/attn/k_proj/bias": ("kv_heads", "head_dim"),
    "layers_0/attn/v_proj/kernel": ("embed", "kv_heads", "head_dim"),
    "layers_0/attn/v_proj/bias": ("kv_heads", "head_dim"),
    "layers_0/attn/o_proj/kernel": ("heads", "head_dim", "embed"),
    "layers_0/post_attn_norm/scale": ("norm",),
    "layers_0/pre_mlp_norm/scale": ("norm",),
    "layers_0/mlp/gate_proj/kernel": ("embed", "mlp"),
    "layers_0/mlp/up_proj/kernel": ("embed", "mlp"),
    "layers_0/mlp/down_proj/kernel": ("mlp", "embed"),
    "layers_0/post_mlp_norm/scale": ("norm",),
    "final_norm/scale": ("norm",),
    "lm_head/kernel": ("embed", "vocab"),
}


def _flat_axes(config):
    boxed = jax.eval_shape(lambda: Transformer(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
    specs = nn.get_partition_spec(boxed)["params"]
    flat = jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))[0]
    return {partitioning.path_name(path): tuple(spec) for path, spec in flat}


@pytest.mark.heavy
def test_parameter_names_and_logical_axes_follow_the_contract():
    everything = ModelConfig(**BASE, qkv_bias=True, use_post_norms=True)
    axes = _flat_axes(everything)
    layer0 = {k: v for k, v in axes.items() if not k.startswith("layers_1/")}
    assert layer0 == CONTRACT_AXES
    shapes = jax.tree.map(lambda x: x.shape, init_params(everything, jax.random.key(0)))
    assert shapes["layers_0"]["attn"]["q_proj"]["kernel"] == (32, 4, 8)
    assert shapes["layers_0"]["attn"]["o_proj"]["kernel"] == (4, 8, 32)
    assert shapes["lm_head"]["kernel"] == (32, 96)
    # Optional parameters are absent when their feature is off.
    plain = _flat_axes(FAMILIES["llama"])
    assert not any(k.endswith("/bias") or "post_" in k for k in plain)
    assert "lm_head/kernel" not in _flat_axes(FAMILIES["qwen2"])  # tied


def _forward(config):
    """Jitted full forward (eager flax runs op by op, far slower for these tests)."""
    model = Transformer(config)
    return jax.jit(lambda params, *args: model.apply({"params": params}, *args))


def _random_params(config, seed=0):
    """Random params with non-trivial norm scales and biases (init leaves them at 1 and 0)."""
    params = init_params(config, jax.random.key(seed))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    rng = np.random.default_rng(seed)
    out = []
    for path, leaf in leaves:
        name = partitioning.path_name(path)
        if name.endswith("/scale"):
            leaf = leaf + 0.3 * rng.standard_normal(leaf.shape).astype(np.float32)
        elif name.endswith("/bias"):
            leaf = 0.3 * rng.standard_normal(leaf.shape).astype(np.float32)
        out.append(jnp.asarray(leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.heavy
def test_kv_cache_decoding_equals_full_recomputation(family):
    config = FAMILIES[family]
    model = Transformer(config)
    params = _random_params(config)
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.integers(0, config.vocab_size, size=(3, 12)), jnp.int32)
    full = _forward(config)(params, tokens)
    lengths = jnp.asarray([4, 7, 2], jnp.int32)
    samples, new = 2, 6
    prefill = jax.jit(lambda p, t, n: model.apply({"params": p}, t, n, samples, new, method=Transformer.prefill))
    logits, cache = prefill(params, tokens[:, :7], lengths)
    for b in range(3):
        np.testing.assert_allclose(logits[b], full[b, int(lengths[b]) - 1], atol=2e-5, rtol=1e-5)
    step_fn = jax.jit(lambda tok, step, cache: model.apply({"params": params}, tok, step, cache,
                                                         method=Transformer.decode_step))
    for step in range(new - 1):
        fed = np.repeat([int(tokens[b, int(lengths[b]) + step]) for b in range(3)], samples)
        logits, cache = step_fn(jnp.asarray(fed, jnp.int32), jnp.int32(step), cache)
        for r in range(3 * samples):
            b = r // samples
            np.testing.assert_allclose(logits[r], full[b, int(lengths[b]) + step], atol=2e-5, rtol=1e-5)


@pytest.mark.heavy
def test_sliding_window_changes_what_a_layer_sees():
    config = FAMILIES["gemma2"]
    assert [config.is_sliding_layer(i) for i in range(3)] == [True, False, True]
    params = _random_params(config)
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, 96, size=(1, 10)), jnp.int32)
    windowed = _forward(config)(params, tokens)
    wide = _forward(config.replace(sliding_window=100))(params, tokens)
    # Within the window nothing differs; beyond it the local layers see less.
    np.testing.assert_allclose(windowed[0, :3], wide[0, :3], atol=1e-5)
    assert float(jnp.abs(windowed[0, 5:] - wide[0, 5:]).max()) > 1e-3


@pytest.mark.heavy
def test_packed_segments_match_separate_sequences():
    config = FAMILIES["llama"]
    forward = _forward(config)
    params = _random_params(config)
    rng = np.random.default_rng(3)
    a = rng.integers(0, 96, size=5)
    b = rng.integers(0, 96, size=7)
    packed = jnp.asarray(np.concatenate([a, b])[None], jnp.int32)
    positions = jnp.asarray(np.concatenate([np.arange(5), np.arange(7)])[None], jnp.int32)
    segments = jnp.asarray(np.array([1] * 5 + [2] * 7)[None], jnp.int32)
    together = forward(params, packed, positions, segments)
    alone_a = forward(params, jnp.asarray(a[None], jnp.int32))
    alone_b = forward(params, jnp.asarray(b[None], jnp.int32))
    np.testing.assert_allclose(together[0, :5], alone_a[0], atol=2e-5)
    np.testing.assert_allclose(together[0, 5:], alone_b[0], atol=2e-5)


@pytest.mark.parametrize("scaling", [
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8192},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096, "beta_fast": 16,
     "mscale": 0.7, "mscale_all_dim": 1.0},
])
def test_rotary_scalings_match_transformers(scaling):
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    theta = 500000.0
    hf = LlamaConfig(hidden_size=1024, num_attention_heads=8, head_dim=128, max_position_embeddings=131072,
                     rope_parameters={"rope_theta": theta, **scaling})
    expected, expected_factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](hf, torch.device("cpu"))
    config = ModelConfig(vocab_size=8, hidden_size=1024, num_layers=1, num_heads=8, num_kv_heads=8, head_dim=128,
                         mlp_dim=8, rope_theta=theta, rope_scaling=scaling)
    inv_freq, factor = inverse_frequencies(config)
    np.testing.assert_allclose(inv_freq, expected.numpy(), rtol=1e-6)
    assert factor == pytest.approx(expected_factor)


@pytest.mark.parametrize("field,value,message", [
    ("num_kv_heads", 3, "does not divide"),
    ("head_dim", 7, "even head_dim"),
    ("mlp_activation", "relu", "mlp_activation"),
    ("rope_scaling", {"rope_type": "dynamic", "factor": 2.0}, "dynamic"),
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0}, "low_freq_factor"),
    ("layer_types", ("full_attention",), "layer_types"),
    ("dtype", "floaty", "dtype"),
])
def test_config_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        ModelConfig(**{**BASE, field: value})
    assert f"ModelConfig.{field}" in str(info.value)


def test_config_is_hashable_and_counts_parameters_without_allocating():
    config = FAMILIES["llama"]
    assert hash(config) == hash(config.replace())
    d, layers, v = 32, 2, 96
    per_layer = d * (4 + 2 * 2) * 8 + 4 * 8 * d + 3 * d * 48 + 2 * d
    assert count_params(config) == 2 * v * d + layers * per_layer + d


def _params_on(partitioner, config, params):
    """Places host params into the partitioner's shardings (as the importer does)."""
    boxed = jax.eval_shape(lambda: Transformer(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
    logical = nn.get_partition_spec(boxed)["params"]
    shardings = partitioner.shardings(logical, params)
    return jax.tree.map(lambda x, s: jax.device_put(x, s), params, shardings)


@pytest.mark.parametrize("axis_sizes", [{"data": 8}, {"data": 4, "model": 2}, {"data": 2, "fsdp": 2, "model": 2},
                                        {"fsdp": 4, "model": 2}])
@pytest.mark.heavy
def test_logits_on_8_devices_equal_1_device(axis_sizes):
    config = FAMILIES["gemma2"]
    params = _random_params(config)
    tokens = jnp.asarray(np.random.default_rng(4).integers(0, 96, size=(8, 10)), jnp.int32)
    single = partitioning.Partitioner(partitioning.make_mesh({"data": 1}, devices=jax.devices()[:1]))
    many = partitioning.Partitioner.from_axis_sizes(axis_sizes)
    assert many.mesh.size == 8
    results = []
    for partitioner in (single, many):
        placed = _params_on(partitioner, config, params)
        apply = partitioner.jit(lambda p, t: Transformer(config).apply({"params": p}, t))
        results.append(np.asarray(apply(placed, partitioner.global_batch(np.asarray(tokens)))))
    np.testing.assert_allclose(results[1], results[0], atol=2e-5, rtol=1e-5)


@pytest.mark.heavy
def test_sharded_init_is_born_sharded_and_undivisible_axes_name_the_parameter():
    config = FAMILIES["llama"]
    partitioner = partitioning.Partitioner.from_axis_sizes({"data": 2, "model": 4})
    with pytest.raises(partitioning.ShardingError, match="k_proj"):
        partitioner.init(lambda rng: Transformer(config).init(rng, jnp.zeros((1, 1), jnp.int32)), jax.random.key(0))
    partitioner = partitioning.Partitioner.from_axis_sizes({"data": 4, "model": 2})
    variables = partitioner.init(lambda rng: Transformer(config).init(rng, jnp.zeros((1, 1), jnp.int32)),
                                 jax.random.key(0))
    q = variables["params"]["layers_0"]["attn"]["q_proj"]["kernel"]
    assert q.sharding.shard_shape(q.shape) == (32, 2, 8)  # heads split over model=2
    assert len(q.addressable_shards) == 8
