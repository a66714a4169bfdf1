"""weights.load_params (and transformer.random_params): random init, orbax (bare params, train state, manager root), Hugging Face."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from next_jax import partitioning
from next_jax.models import hf_checkpoint, transformer, weights
from next_jax.models.config import ModelConfig

CONFIG = ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=48)


@pytest.fixture(scope="module")
def source():
    """Parameters on one device, perturbed so every tensor is distinctive."""
    part = partitioning.Partitioner(partitioning.make_mesh({"data": 1}, devices=jax.devices()[:1]))
    params = transformer.random_params(CONFIG, part, seed=3)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _sharded():
    return partitioning.Partitioner(partitioning.make_mesh({"fsdp": 4, "model": 2}))


def _assert_same(loaded, expected, part):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6), loaded, expected)
    abstract, _ = transformer.abstract_params(CONFIG, part)
    jax.tree.map(lambda a, s: a.sharding.is_equivalent_to(s.sharding, a.ndim) or pytest.fail(str(a.sharding)), loaded, abstract)


@pytest.mark.heavy
def test_random_init_depends_only_on_the_seed(source):
    part = _sharded()
    a, model_id = weights.load_params(None, CONFIG, part, init_seed=3)
    b = transformer.random_params(CONFIG, partitioning.Partitioner(partitioning.make_mesh({"data": 8})), seed=3)
    assert model_id == "random-init:3"
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def _save(path, tree):
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, tree)
    checkpointer.wait_until_finished()
    checkpointer.close()


@pytest.mark.parametrize("layout", ["params", "train_state", "manager"])
def test_orbax_checkpoints_restore_into_target_shardings(tmp_path, source, layout):
    if layout == "params":
        path = tmp_path / "ckpt"
        _save(path, source)
    elif layout == "train_state":
        path = tmp_path / "ckpt"
        state = {"params": source, "opt_state": {"mu": source}, "step": np.int32(7)}
        _save(path, state)
    else:
        path = tmp_path / "checkpoints"
        with ocp.CheckpointManager(path) as manager:
            for step in (1, 5):
                scaled = jax.tree.map(lambda x: x * step, source)
                manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": scaled, "step": step})))
            manager.wait_until_finished()
        source = jax.tree.map(lambda x: x * 5, source)  # the latest step
    part = _sharded()
    loaded, model_id = weights.load_params(str(path), CONFIG, part)
    assert model_id == str(path)
    _assert_same(loaded, source, part)


def test_hugging_face_directories_are_detected_and_checked(tmp_path, source):
    hf_checkpoint.save_hf_checkpoint(str(tmp_path), source, CONFIG)
    assert weights.is_hf_checkpoint(str(tmp_path))
    part = _sharded()
    loaded, _ = weights.load_params(str(tmp_path), CONFIG.replace(max_seq_len=512), part)
    _assert_same(loaded, source, part)
    with pytest.raises(hf_checkpoint.CheckpointError, match=r"does not match the checkpoint: rope_theta: config 500000.0 vs checkpoint 10000.0"):
        weights.load_params(str(tmp_path), CONFIG.replace(rope_theta=500000.0), part)


def test_other_paths_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        weights.load_params(str(tmp_path / "missing"), CONFIG, _sharded())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a Hugging Face checkpoint .* nor an orbax pytree checkpoint"):
        weights.load_params(str(tmp_path / "empty"), CONFIG, _sharded())
