"""Partitioning: meshes, rules, born-sharded init, optimizer/batch shardings, 1 vs 8 devices."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from next_jax import partitioning
from next_jax.partitioning import DEFAULT_RULES, Partitioner, ShardingError, make_mesh

VOCAB, EMBED, HEADS, HEAD_DIM, MLP = 32, 16, 4, 4, 32

MESH_SHAPES = [
    {"data": 8},
    {"data": 2, "fsdp": 2, "model": 2},
    {"data": 1, "fsdp": 4, "model": 2},
    {"fsdp": 8},
]


class TinyLM(nn.Module):
    """Embedding, one attention-shaped projection and a gated MLP, with logical axes."""

    @nn.compact
    def __call__(self, tokens):
        init = nn.initializers.normal(0.5)
        table = self.param(
            "embedding", nn.with_logical_partitioning(init, ("vocab", "embed")), (VOCAB, EMBED)
        )
        x = jnp.take(table, tokens, axis=0)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        q = self.param(
            "q", nn.with_logical_partitioning(init, ("embed", "heads", "head_dim")), (EMBED, HEADS, HEAD_DIM)
        )
        o = self.param(
            "o", nn.with_logical_partitioning(init, ("heads", "head_dim", "embed")), (HEADS, HEAD_DIM, EMBED)
        )
        h = jnp.einsum("ble,ehd->blhd", x, q)
        h = nn.with_logical_constraint(h, ("batch", "length", "act_heads", "act_head_dim"))
        x = x + jnp.einsum("blhd,hde->ble", jnp.tanh(h), o)
        scale = self.param("norm", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (EMBED,))
        x = x * scale
        gate = nn.DenseGeneral(MLP, use_bias=False, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")), name="gate")(x)
        up = nn.DenseGeneral(MLP, use_bias=False, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")), name="up")(x)
        hidden = nn.with_logical_constraint(nn.silu(gate) * up, ("batch", "length", "act_mlp"))
        x = x + nn.DenseGeneral(EMBED, use_bias=False, kernel_init=nn.with_logical_partitioning(init, ("mlp", "embed")), name="down")(hidden)
        logits = jnp.einsum("ble,ve->blv", x, table)
        return nn.with_logical_constraint(logits, ("batch", "length", "act_vocab"))


def _single_device_partitioner():
    return Partitioner(make_mesh({"data": 1}, devices=jax.devices()[:1]))


def _tokens(batch=8, length=6):
    return np.random.default_rng(0).integers(0, VOCAB, size=(batch, length), dtype=np.int32)


# --------------------------------------------------------------------------------------------
# Mesh.


def test_make_mesh_fills_minus_one_and_uses_auto_axes():
    mesh = make_mesh({"data": -1, "model": 2})
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "model": 2}
    assert tuple(mesh.axis_types) == (AxisType.Auto,) * 3
    assert dict(make_mesh({"model": 2}).shape) == {"data": 4, "fsdp": 1, "model": 2}
    assert dict(make_mesh().shape) == {"data": 8, "fsdp": 1, "model": 1}
    assert dict(make_mesh({"fsdp": -1, "model": 4}).shape) == {"data": 1, "fsdp": 2, "model": 4}


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"data": 3, "model": 2}, "multiply to 6 but there are 8 devices"),
        ({"data": -1, "model": 3}, "does not divide the 8 devices"),
        ({"data": -1, "model": -1}, "at most one mesh axis may be -1"),
        ({"tensor": 2}, "unknown mesh axis name"),
        ({"model": 0}, "sizes are positive ints or -1"),
    ],
)
def test_make_mesh_errors(sizes, message):
    with pytest.raises(ValueError, match=message):
        make_mesh(sizes)


# --------------------------------------------------------------------------------------------
# Rules.


def test_default_rules_map_contract_axes():
    part = Partitioner(make_mesh({"data": 2, "fsdp": 2, "model": 2}))
    assert part.mesh_spec(("vocab", "embed")) == P("model", "fsdp")
    assert part.mesh_spec(("embed", "kv_heads", "head_dim")) == P("fsdp", "model", None)
    assert part.mesh_spec(("batch", "length", "act_embed")) == P(("data", "fsdp"), None, None)
    assert part.mesh_spec(("cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim")) == P(
        ("data", "fsdp"), None, "model", None
    )
    # Priority: a mesh axis already taken by an earlier rule is not reused in the same array.
    assert part.mesh_spec(("batch", "embed")) == P(("data", "fsdp"), None)


def test_rules_can_be_overridden_by_priority():
    rules = (("kv_heads", None),) + DEFAULT_RULES
    part = Partitioner(make_mesh({"model": 4}), rules)
    assert part.mesh_spec(("embed", "kv_heads", "head_dim")) == P("fsdp", None, None)


def test_unknown_logical_axis_is_an_error():
    part = Partitioner(make_mesh())
    with pytest.raises(ShardingError, match="'emb' has no rule"):
        part.mesh_spec(("vocab", "emb"))


def test_non_dividing_axis_names_the_parameter():
    part = Partitioner(make_mesh({"model": 8}))
    logical = {"params": {"layers_0": {"k_proj": {"kernel": P("embed", "kv_heads", "head_dim")}}}}
    shapes = {"params": {"layers_0": {"k_proj": {"kernel": jax.ShapeDtypeStruct((16, 2, 4), jnp.float32)}}}}
    with pytest.raises(ShardingError, match=r"params/layers_0/k_proj/kernel: dimension 1 \(logical axis 'kv_heads', size 2\)"):
        part.shardings(logical, shapes)


def test_init_reports_non_dividing_parameter():
    part = Partitioner(make_mesh({"model": 8}))  # HEADS=4 cannot split 8 ways
    with pytest.raises(ShardingError, match=r"params/o: dimension 0 \(logical axis .heads., size 4\)"):
        part.init(TinyLM().init, jax.random.key(0), _tokens())


# --------------------------------------------------------------------------------------------
# Born-sharded init and 1-vs-8-device equality.


def _forward(part, variables, tokens):
    apply = part.jit(TinyLM().apply, out_shardings=part.sharding(("batch", "length", "act_vocab")))
    return np.asarray(apply(variables, part.global_batch(tokens, ("batch", "length"))))


@pytest.mark.parametrize("sizes", MESH_SHAPES)
@pytest.mark.heavy
def test_sharded_init_and_forward_match_single_device(sizes):
    tokens = _tokens()
    one = _single_device_partitioner()
    ref_vars = one.init(TinyLM().init, jax.random.key(1), tokens)
    ref = _forward(one, ref_vars, tokens)

    part = Partitioner(make_mesh(sizes))
    variables, logical = part.init(TinyLM().init, jax.random.key(1), tokens, with_axes=True)
    expected = part.shardings(logical)
    for leaf, sharding in zip(jax.tree.leaves(variables), jax.tree.leaves(expected)):
        assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
    table_emb = variables["params"]["embedding"]
    assert table_emb.sharding.spec == part.mesh_spec(("vocab", "embed"))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), variables, ref_vars)
    np.testing.assert_allclose(_forward(part, variables, tokens), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sizes", [{"data": 2, "fsdp": 2, "model": 2}])
@pytest.mark.heavy
def test_optimizer_state_sharding_and_train_step_match_single_device(sizes):
    tokens = _tokens()
    tx = optax.adamw(1e-2)

    def run(part):
        params, logical = part.init(TinyLM().init, jax.random.key(2), tokens, with_axes=True)
        abstract_opt = jax.eval_shape(tx.init, params)
        opt_shardings = part.optimizer_shardings(abstract_opt, logical)
        param_shardings = part.shardings(logical)
        opt_state = part.jit(tx.init, out_shardings=opt_shardings)(params)

        def step(params, opt_state, batch):
            def loss_fn(p):
                logits = TinyLM().apply(p, batch[:, :-1])
                return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        step = part.jit(
            step,
            in_shardings=(param_shardings, opt_shardings, part.sharding(("batch", "length"))),
            out_shardings=(param_shardings, opt_shardings, part.replicated),
            donate_argnums=(0, 1),
        )
        batch = part.global_batch(tokens, ("batch", "length"))
        for _ in range(2):
            params, opt_state, loss = step(params, opt_state, batch)
        return params, opt_state, float(loss), opt_shardings, part

    ref_params, _, ref_loss, _, _ = run(_single_device_partitioner())
    params, opt_state, loss, opt_shardings, part = run(Partitioner(make_mesh(sizes)))

    adam = opt_state[0]
    assert adam.mu["params"]["embedding"].sharding.spec == part.mesh_spec(("vocab", "embed"))
    assert adam.nu["params"]["gate"]["kernel"].sharding.spec == part.mesh_spec(("embed", "mlp"))
    assert adam.count.sharding.spec == P()
    assert opt_shardings[0].count.spec == P()
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5),
        params,
        ref_params,
    )


def test_optimizer_leaves_of_other_shapes_are_replicated():
    part = Partitioner(make_mesh({"fsdp": 2, "model": 4}))
    params, logical = part.init(TinyLM().init, jax.random.key(0), _tokens(), with_axes=True)
    abstract = jax.eval_shape(optax.adafactor(1e-2, min_dim_size_to_factor=8).init, params)
    shardings = part.optimizer_shardings(abstract, logical)
    for leaf, sharding in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings)):
        assert isinstance(sharding, NamedSharding)
        for size, axes in zip(leaf.shape, tuple(sharding.spec)):
            if axes is not None:
                assert size % partitioning._mesh_axis_size(part.mesh, axes) == 0


# --------------------------------------------------------------------------------------------
# Batches and data layout.


def test_global_batch_shards_rows_and_rejects_uneven_batches():
    part = Partitioner(make_mesh({"data": 4, "model": 2}))
    batch = {"tokens": np.arange(32, dtype=np.int32).reshape(8, 4), "lengths": np.arange(8, dtype=np.int32)}
    out = part.global_batch(batch)
    assert out["tokens"].shape == (8, 4) and out["tokens"].sharding.spec == P(("data", "fsdp"), None)
    assert out["lengths"].sharding.spec == P(("data", "fsdp"))
    np.testing.assert_array_equal(np.asarray(out["tokens"]), batch["tokens"])
    with pytest.raises(ShardingError, match="batch feature tokens: dimension 0"):
        part.global_batch({"tokens": np.zeros((6, 4), np.int32)})


def test_data_shard_info_single_process():
    assert Partitioner(make_mesh({"data": 8})).data_shard_info() == (0, 1)


# --------------------------------------------------------------------------------------------
# Parameter table.


def test_param_table_lists_every_parameter_with_bytes_per_device(tmp_path):
    part = Partitioner(make_mesh({"data": 2, "fsdp": 2, "model": 2}))
    abstract, logical = part.init_abstract(TinyLM().init, jax.random.key(0), _tokens())
    table = part.log_param_table(abstract, logical, path=str(tmp_path / "param_table.txt"))
    names = [row.name for row in table.rows]
    assert names == sorted(path for path in [
        "params/down/kernel", "params/embedding", "params/gate/kernel", "params/norm", "params/o",
        "params/q", "params/up/kernel"])
    emb = next(r for r in table.rows if r.name == "params/embedding")
    assert emb.mesh_axes == ("model", "fsdp")
    assert emb.bytes_per_device == (VOCAB // 2) * (EMBED // 2) * 4
    norm = next(r for r in table.rows if r.name == "params/norm")
    assert norm.bytes_per_device == EMBED * 4
    assert table.total_params == sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract))
    saved = (tmp_path / "param_table.txt").read_text()
    assert "params/q" in saved and "embed, heads, head_dim" in saved and "fsdp, model, None" in saved
