"""Sampling gives identical samples on 1 device and on 8 fake devices in several mesh shapes."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from next_jax import decoding, partitioning
from next_jax.models import ModelConfig, Transformer, init_params

CONFIG = ModelConfig(vocab_size=256, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                     mlp_dim=64, qkv_bias=True, tie_embeddings=True)
PROMPTS, WIDTH, SAMPLES, NEW = 8, 10, 4, 12


def _run_all(partitioner, params, prompts, lengths, seeds, settings):
    """Every sampler setting through one compiled, sharded generate."""
    boxed = jax.eval_shape(lambda: Transformer(CONFIG).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
    shardings = partitioner.shardings(nn.get_partition_spec(boxed)["params"], params)
    placed = jax.tree.map(jax.device_put, params, shardings)
    generate = partitioner.jit(
        functools.partial(decoding.generate, Transformer(CONFIG), max_new_tokens=NEW, top_k_cap=16),
        out_shardings=partitioner.replicated,
    )
    batch = partitioner.global_batch({"prompts": prompts, "lengths": lengths, "seeds": seeds})
    return {
        name: jax.tree.map(np.asarray, generate(placed, batch["prompts"], batch["lengths"], batch["seeds"], s))
        for name, s in settings.items()
    }


@pytest.fixture(scope="module")
def reference():
    params = init_params(CONFIG, jax.random.key(3))
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, WIDTH + 1, size=PROMPTS).astype(np.int32)
    prompts = np.zeros((PROMPTS, WIDTH), np.int32)
    for b, n in enumerate(lengths):
        prompts[b, :n] = rng.integers(1, 256, size=n)
    seeds = decoding.seed_key_data(
        [[decoding.derive_seed(11, f"t{b}", n) for n in range(SAMPLES)] for b in range(PROMPTS)])
    single = partitioning.Partitioner(partitioning.make_mesh({"data": 1}, devices=jax.devices()[:1]))
    settings = {
        "sampled": decoding.SamplingParams.make(0.9, 40, 0.95, stop_ids=[7, 8]),
        "full_vocab": decoding.SamplingParams.make(1.0),
        "greedy": decoding.SamplingParams.make(0.0),
    }
    inputs = (params, prompts, lengths, seeds)
    return inputs, settings, _run_all(single, *inputs, settings)


@pytest.mark.parametrize("axis_sizes", [{"data": 8}, {"data": 4, "model": 2}, {"data": 2, "fsdp": 2, "model": 2}])
@pytest.mark.heavy
def test_samples_identical_on_8_devices(reference, axis_sizes):
    inputs, settings, expected = reference
    partitioner = partitioning.Partitioner.from_axis_sizes(axis_sizes)
    assert partitioner.mesh.size == 8
    for name, got in _run_all(partitioner, *inputs, settings).items():
        np.testing.assert_array_equal(got.tokens, expected[name].tokens, err_msg=name)
        np.testing.assert_array_equal(got.lengths, expected[name].lengths, err_msg=name)
        np.testing.assert_allclose(got.logprobs, expected[name].logprobs, rtol=1e-4, atol=1e-4, err_msg=name)
    # The draws are real samples: rows of one prompt differ, and stop ids ended some rows.
    sampled = expected["sampled"]
    assert len({tuple(r) for r in sampled.tokens[0]}) == SAMPLES
    assert (sampled.lengths < NEW).any()
