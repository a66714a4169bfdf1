"""Scanned layers (``ModelConfig.scan_layers``): the same model as the per-layer one.

For the same weights (converted between the layouts), scanned and per-layer models give the same
logits, the same KV-cached greedy decode (Gemma 2's alternating windows included), the same loss
and update under remat; stacked parameters carry the ``layers`` logical axis and get the right
shardings on 8 fake devices; checkpoints saved in one layout restore into the other.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import PartitionSpec as P

from next_jax import checkpoints, decoding, optimizers, partitioning
from next_jax import trainer as trainer_lib
from next_jax.models import ModelConfig, Transformer, init_params, stacking, weights
from next_jax.models import lm as lm_lib

BASE = dict(vocab_size=96, hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=48)
CONFIGS = {
    "llama": ModelConfig(**BASE, qkv_bias=True),
    # Windows alternate (local, global, local): the scan must pick each layer's own.
    "gemma2": ModelConfig(**BASE, mlp_activation="gelu_tanh", tie_embeddings=True, embed_scale=True,
                          query_pre_attn_scalar=16.0, attn_logit_softcap=5.0, final_logit_softcap=3.0,
                          sliding_window=3, global_layer_period=2, use_post_norms=True),
    # Windows per layer from layer_types (global first): not a period the scan could assume.
    "mixed_types": ModelConfig(**BASE, sliding_window=2,
                               layer_types=("full_attention", "sliding_attention", "sliding_attention")),
}


def _random_params(config, seed=0):
    """Per-layer random parameters with non-trivial norm scales and biases."""
    params = init_params(config, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + 0.3 * rng.standard_normal(x.shape).astype(x.dtype), params)


def _axes(config):
    boxed = jax.eval_shape(lambda: Transformer(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
    return nn.get_partition_spec(boxed)["params"], nn.unbox(boxed)["params"]


@pytest.mark.heavy
def test_stacked_parameters_have_a_leading_layers_axis():
    config = CONFIGS["llama"]
    per_layer_axes, per_layer_shapes = _axes(config)
    stacked_axes, stacked_shapes = _axes(config.replace(scan_layers=True))
    assert set(stacked_axes) == {"token_embed", "layers", "final_norm", "lm_head"}
    # Every per-layer parameter reappears once, with 'layers' and num_layers in front.
    flat = lambda tree: {partitioning.path_name(p): v for p, v in  # noqa: E731
                         jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, P))[0]}
    ours, theirs = flat(stacked_axes), flat(per_layer_axes)
    ours_shapes, theirs_shapes = flat(stacked_shapes), flat(per_layer_shapes)
    for name, spec in theirs.items():
        if name.startswith("layers_"):
            stacked_name = "layers/" + name.split("/", 1)[1]
            assert ours[stacked_name] == P("layers", *spec)
            assert ours_shapes[stacked_name].shape == (3,) + theirs_shapes[name].shape
        else:
            assert ours[name] == spec
    # The conversion is exact both ways, and the layout is recognised.
    params = _random_params(config)
    stacked = stacking.convert(params, True)
    assert stacking.layout_of(stacked) is True and stacking.layout_of(params) is False
    assert jax.tree.map(lambda x: x.shape, stacked) == jax.tree.map(lambda x: x.shape, stacked_shapes)
    jax.tree.map(np.testing.assert_array_equal, stacking.convert(stacked, False), params)
    with pytest.raises(ValueError, match="mixes"):
        stacking.layout_of({"a": {"layers": {}}, "b": {"layers_0": {}}})


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.heavy
def test_scanned_model_gives_the_same_logits_and_greedy_decode(name):
    config = CONFIGS[name]
    scanned = config.replace(scan_layers=True, remat_policy="full")
    params = _random_params(config)
    stacked = stacking.convert(params, True)
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.integers(1, config.vocab_size, size=(2, 11)), jnp.int32)
    segments = jnp.asarray([[1] * 6 + [2] * 5, [1] * 11], jnp.int32)
    positions = jnp.asarray([list(range(6)) + list(range(5)), list(range(11))], jnp.int32)

    def logits(cfg, p):
        return jax.jit(lambda p: Transformer(cfg).apply({"params": p}, tokens, positions, segments))(p)

    np.testing.assert_allclose(logits(scanned, stacked), logits(config, params), atol=2e-5, rtol=1e-5)

    lengths = jnp.asarray([4, 7], jnp.int32)
    seeds = decoding.seed_key_data(np.arange(4).reshape(2, 2))

    def greedy(cfg, p):
        generate = jax.jit(functools.partial(decoding.generate, Transformer(cfg), max_new_tokens=8))
        return generate(p, tokens[:, :7], lengths, seeds, decoding.SamplingParams.make(0.0))

    ours, theirs = greedy(scanned, stacked), greedy(config, params)
    np.testing.assert_array_equal(ours.tokens, theirs.tokens)
    np.testing.assert_allclose(ours.logprobs, theirs.logprobs, rtol=1e-4, atol=1e-4)


def _batch(config, rows=4, length=10, seed=0):
    tokens = np.random.default_rng(seed).integers(1, config.vocab_size, size=(rows, length)).astype(np.int32)
    return {"decoder_target_tokens": tokens, "decoder_loss_weights": np.ones_like(tokens)}


def _opt():
    return optimizers.AdamW(learning_rate=optimizers.Schedule(peak=1e-2, decay="constant"), weight_decay=0.1).make(10)


@pytest.mark.heavy
def test_train_step_with_scan_and_remat_equals_the_per_layer_one(policy="dots"):
    config = CONFIGS["gemma2"]
    part = partitioning.Partitioner(partitioning.make_mesh({"data": 1}, devices=jax.devices()[:1]))
    per_layer = trainer_lib.Trainer(lm_lib.DecoderLM(config), _opt(), part)
    scanned = trainer_lib.Trainer(lm_lib.DecoderLM(config.replace(scan_layers=True, remat_policy=policy)), _opt(), part)
    params = _random_params(config)
    state_a = per_layer.state_from_params(params)
    state_b = scanned.state_from_params(stacking.convert(params, True))
    for step in range(2):
        batch = _batch(config, seed=step)
        state_a, metrics_a = per_layer.train_step(state_a, per_layer.global_batch(batch))
        state_b, metrics_b = scanned.train_step(state_b, scanned.global_batch(batch))
        np.testing.assert_allclose(metrics_b["loss"], metrics_a["loss"], rtol=1e-5)
        np.testing.assert_allclose(metrics_b["grad_norm"], metrics_a["grad_norm"], rtol=1e-4)
    # Weight decay skips stacked norm scales as it skips per-layer ones, so the updates agree.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 jax.device_get(stacking.convert(state_b.params, False)), jax.device_get(state_a.params))


@pytest.mark.heavy
def test_stacked_shardings_on_8_devices():
    config = CONFIGS["llama"].replace(scan_layers=True, num_heads=8, num_kv_heads=2, mlp_dim=64)
    part = partitioning.Partitioner.from_axis_sizes({"data": 2, "fsdp": 2, "model": 2})
    params, logical = part.init(functools.partial(_init, config), jax.random.key(0), with_axes=True)
    params = params["params"]
    q = params["layers"]["attn"]["q_proj"]["kernel"]
    assert q.shape == (3, 32, 8, 8)
    assert q.sharding.spec == P(None, "fsdp", "model", None)
    assert params["layers"]["mlp"]["down_proj"]["kernel"].sharding.spec == P(None, "model", "fsdp")
    assert params["layers"]["pre_attn_norm"]["scale"].sharding.spec == P(None, None)
    table = part.param_table(params, logical["params"])
    rows = {r.name: r for r in table.rows}
    assert rows["layers/attn/q_proj/kernel"].logical_axes == ("layers", "embed", "heads", "head_dim")
    assert rows["layers/attn/q_proj/kernel"].bytes_per_device == 3 * 16 * 4 * 8 * 4
    assert table.total_params == sum(np.prod(x.shape) for x in jax.tree.leaves(params))
    # The trainer's optimizer moments follow the stacked parameters.
    trainer = trainer_lib.Trainer(lm_lib.DecoderLM(config), _opt(), part)
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)  # noqa: E731
    (adam,) = [x for x in jax.tree.leaves(trainer.state_shardings.opt_state, is_leaf=is_adam) if is_adam(x)]
    mu = adam.mu
    assert mu["layers"]["attn"]["q_proj"]["kernel"].spec == P(None, "fsdp", "model", None)
    # A dimension that does not divide still fails loudly, naming the stacked parameter.
    odd = config.replace(num_kv_heads=3, num_heads=3)
    with pytest.raises(partitioning.ShardingError,
                       match=r"params/layers/attn/k_proj/bias: dimension 1 \(logical axis 'kv_heads', size 3\)"):
        part.init(functools.partial(_init, odd), jax.random.key(0))
    # Mapping 'layers' onto a mesh axis by a rule before the defaults shards the layer axis.
    by_layer = partitioning.Partitioner(part.mesh, (("layers", "data"),) + partitioning.DEFAULT_RULES)
    with pytest.raises(partitioning.ShardingError, match=r"dimension 0 \(logical axis 'layers', size 3\)"):
        by_layer.init(functools.partial(_init, config), jax.random.key(0))


def _init(config, rng):
    return Transformer(config).init(rng, jnp.zeros((1, 1), jnp.int32))


@pytest.mark.heavy
def test_checkpoints_restore_into_the_other_layout(tmp_path):
    config = CONFIGS["gemma2"]
    scanned = config.replace(scan_layers=True)
    saver = trainer_lib.Trainer(lm_lib.DecoderLM(config), _opt(), partitioning.Partitioner(axis_sizes={"data": 8}))
    ckpt = checkpoints.Checkpointer(str(tmp_path), checkpoints.CheckpointConfig(period=1, async_save=False))
    state = saver.state_from_params(_random_params(config))
    state, _ = saver.train_step(state, saver.global_batch(_batch(config, rows=8)))
    ckpt.save(1, state, {"batches": 1})
    ckpt.close()
    expected = jax.device_get(state)

    # A scanned run resumes the per-layer run's train state (moments included) on another mesh.
    other = trainer_lib.Trainer(lm_lib.DecoderLM(scanned), _opt(),
                                partitioning.Partitioner(axis_sizes={"fsdp": 2, "model": 2, "data": 2}))
    restored, position, _ = checkpoints.Checkpointer(str(tmp_path)).restore(1, other.abstract_state)
    assert position == {"batches": 1}
    for leaf, sharding in zip(jax.tree.leaves(restored), jax.tree.leaves(other.state_shardings)):
        assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(stacking.convert(restored, False)), expected)

    # Parameters for sampling: either layout from the per-layer checkpoint, and back again.
    part = partitioning.Partitioner(axis_sizes={"data": 4, "model": 2})
    params, _ = weights.load_params(str(tmp_path), scanned, part)
    assert params["layers"]["attn"]["q_proj"]["kernel"].sharding.spec == part.mesh_spec(
        ("layers", "embed", "heads", "head_dim"))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(stacking.convert(params, False)), expected.params)
    saver = ocp.StandardCheckpointer()
    saver.save(str(tmp_path / "stacked"), params)
    saver.wait_until_finished()
    back, _ = weights.load_params(str(tmp_path / "stacked"), config, part)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(back), expected.params)
