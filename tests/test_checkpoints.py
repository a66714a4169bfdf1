"""Checkpoints in the training loop: restore onto another mesh, SIGTERM answered with a save, a NaN
loss stops the run naming the last good checkpoint, and parameters restore for sampling."""

import os
import signal

import jax
import numpy as np
import pytest

from next_jax import checkpoints, optimizers, partitioning
from next_jax import trainer as trainer_lib
from next_jax.models import ModelConfig, weights
from next_jax.models import lm as lm_lib

CONFIG = ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                     mlp_dim=64, max_seq_len=64)


def _trainer(axis_sizes):
    opt = optimizers.AdamW(learning_rate=optimizers.Schedule(peak=1e-2, decay="constant")).make(100)
    return trainer_lib.Trainer(lm_lib.DecoderLM(CONFIG), opt, partitioning.Partitioner(axis_sizes=axis_sizes))


def _batches(poison_at=None, on_step=None):
    rng = np.random.default_rng(0)
    step = 0
    while True:
        step += 1
        if on_step:
            on_step(step)
        tokens = rng.integers(1, CONFIG.vocab_size, size=(8, 16)).astype(np.int32)
        if step == poison_at:
            tokens[0, 3] = 10**6  # an id past the embedding table: NaN activations
        yield {"decoder_target_tokens": tokens, "decoder_loss_weights": np.ones_like(tokens)}


def _loop(trainer, state, ckpt, steps, **kw):
    return trainer_lib.train_loop(trainer, state, kw.pop("batches", _batches()), start_step=0, total_steps=steps,
                                  input_position=lambda: {"batches": 0}, checkpointer=ckpt, summary_period=1, **kw)


@pytest.mark.heavy
def test_restore_onto_another_mesh_and_params_for_sampling(tmp_path):
    saver = _trainer({"data": 8})
    ckpt = checkpoints.Checkpointer(str(tmp_path), checkpoints.CheckpointConfig(period=2))
    result = _loop(saver, saver.init_state(0), ckpt, 2)
    ckpt.close()
    assert result.checkpoint == str(tmp_path / "checkpoints" / "2")
    saved = jax.device_get(checkpoints.Checkpointer(str(tmp_path)).restore(2, saver.abstract_state)[0])

    other = _trainer({"fsdp": 4, "model": 2})
    state, position, summary = checkpoints.Checkpointer(str(tmp_path)).restore(2, other.abstract_state)
    assert position == {"batches": 0} and summary["step"] == 2
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), saved)
    for leaf, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(other.state_shardings)):
        assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
    kernel = state.params["layers_0"]["mlp"]["up_proj"]["kernel"]
    assert kernel.sharding.spec == other.partitioner.mesh_spec(("embed", "mlp"))

    # Sampling reads only the parameters, from the MODEL_DIR, the step directory or the manager root.
    for path in (tmp_path, tmp_path / "checkpoints", tmp_path / "checkpoints" / "2"):
        params, _ = weights.load_params(str(path), CONFIG, other.partitioner)
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), saved.params)


@pytest.mark.heavy
def test_sigterm_saves_and_stops(tmp_path):
    trainer = _trainer({"data": 8})
    ckpt = checkpoints.Checkpointer(str(tmp_path), checkpoints.CheckpointConfig(period=100))
    sigterm_at = 3

    def on_step(step):
        if step == sigterm_at + 1:  # delivered while step 4's batch is read: step 4 runs, then the save
            os.kill(os.getpid(), signal.SIGTERM)

    result = _loop(trainer, trainer.init_state(0), ckpt, 10, batches=_batches(on_step=on_step))
    ckpt.close()
    assert result.step == sigterm_at + 1
    assert checkpoints.Checkpointer(str(tmp_path)).all_steps() == [sigterm_at + 1]


@pytest.mark.heavy
def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path):
    trainer = _trainer({"data": 8})
    ckpt = checkpoints.Checkpointer(str(tmp_path), checkpoints.CheckpointConfig(period=2))
    with pytest.raises(trainer_lib.NaNLossError, match=r"at step 5.*checkpoints/4"):
        _loop(trainer, trainer.init_state(0), ckpt, 10, batches=_batches(poison_at=5))
    ckpt.close()
    assert checkpoints.Checkpointer(str(tmp_path)).all_steps() == [2, 4]
