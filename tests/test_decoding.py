"""Sampling semantics on hand-made ``tokens_to_logits`` with known distributions, stop ids, seeds,
and the transformer's cached sampling against full recomputation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from next_jax import decoding
from next_jax.decoding import SamplingParams
from next_jax.models import ModelConfig, Transformer, init_params


def _seeds(batch, samples, run_seed=0):
    return jnp.asarray(decoding.seed_key_data(
        [[decoding.derive_seed(run_seed, f"task-{b}", n) for n in range(samples)] for b in range(batch)]
    ))


def _stationary(tokens, step, logits_row):
    """tokens_to_logits whose "cache" is one logits row, returned at every step (fresh draws)."""
    return jnp.broadcast_to(logits_row, (tokens.shape[0], logits_row.shape[0])), logits_row


def _reference(logits, temperature, top_k, top_p):
    """transformers' order: temperature, top-k, then top-p on what top-k left."""
    scaled = np.asarray(logits, np.float64) / temperature
    if top_k:
        kth = np.sort(scaled)[::-1][min(top_k, scaled.size) - 1]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if top_p < 1:
        order = np.argsort(-probs, kind="stable")
        before = np.cumsum(probs[order]) - probs[order]
        keep = np.zeros_like(probs, bool)
        keep[order[before < top_p]] = True
        probs = np.where(keep, probs, 0)
        probs /= probs.sum()
    return probs


@functools.lru_cache(maxsize=None)
def _sampler(steps, cap):
    return jax.jit(functools.partial(decoding.sample, _stationary, max_new_tokens=steps, top_k_cap=cap))


def _draw(logits_row, sampling, rows=512, steps=8, cap=8):
    row = jnp.asarray(logits_row, jnp.float32)
    out = _sampler(steps, cap)(row[None], row, _seeds(1, rows), sampling)
    return np.asarray(out.tokens).reshape(-1)


def _peaked_logits(vocab, mass_head):
    """A few likely tokens (scattered over the vocabulary) plus a flat tail holding 1 - mass_head."""
    rng = np.random.default_rng(7)
    head = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]) * mass_head
    # Distinct tail values: at a tie on the top-k / top-p boundary next_jax keeps every tied token,
    # transformers an arbitrary subset.
    tail = rng.uniform(0.5, 1.5, size=vocab)
    probs = tail / tail.sum() * (1 - mass_head) * vocab / (vocab - head.size)
    ids = rng.choice(vocab, size=head.size, replace=False)
    probs[ids] = head
    return np.log(probs), ids


@pytest.mark.parametrize("vocab", [64, 4096])  # 4096 > 4 * 32 * cap: the two-stage candidate search
@pytest.mark.parametrize("temperature,top_k,top_p,mass_head", [
    (1.0, 3, 1.0, 0.9),     # top-k within the candidates
    (0.7, 5, 0.8, 0.9),     # top-k then top-p
    (1.0, 0, 0.7, 0.9),     # pure top-p, nucleus inside the candidates
    (1.0, 0, 0.97, 0.9),    # pure top-p reaching into the tail: full-vocabulary path
    (1.3, 0, 1.0, 0.9),     # pure temperature: full-vocabulary path
    (0.9, 20, 0.95, 0.5),   # top-k above the candidate cap: full-vocabulary path
])
@pytest.mark.heavy
def test_sampled_frequencies_match_the_truncated_distribution(vocab, temperature, top_k, top_p, mass_head):
    logits, head_ids = _peaked_logits(vocab, mass_head)
    expected = _reference(logits, temperature, top_k, top_p)
    tokens = _draw(logits, SamplingParams.make(temperature, top_k, top_p))
    counts = np.bincount(tokens, minlength=vocab)
    assert counts[expected == 0].sum() == 0, "sampled a token the settings exclude"
    n = tokens.size
    buckets = [[i] for i in head_ids] + [[i for i in range(vocab) if i not in set(head_ids)]]
    for bucket in buckets:
        p = expected[bucket].sum()
        observed = counts[bucket].sum() / n
        sigma = max(np.sqrt(p * (1 - p) / n), 1e-9)
        assert abs(observed - p) <= 5 * sigma + 1e-9, (bucket[:3], observed, p)


@pytest.mark.heavy
def test_top_p_keeps_exactly_the_nucleus():
    probs = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    logits = np.log(np.concatenate([probs, np.full(59, 1e-12)]))
    for top_p, allowed in [(0.5, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}), (0.95, {0, 1, 2, 3})]:
        seen = set(_draw(logits, SamplingParams.make(1.0, 0, top_p), rows=256).tolist())
        assert seen == allowed, (top_p, seen)


def test_greedy_follows_the_argmax_chain_and_feeds_tokens_in_order():
    vocab = 50
    table = jnp.asarray(np.random.default_rng(0).standard_normal((vocab, vocab)), jnp.float32)
    calls = []

    def tokens_to_logits(tokens, step, cache):
        calls.append(1)
        return table[tokens] + 0.0 * step, cache

    first = table[jnp.asarray([3, 17])]
    out = jax.jit(functools.partial(decoding.sample, tokens_to_logits, max_new_tokens=6))(
        first, None, _seeds(2, 3), SamplingParams.make(temperature=0.0))
    log_softmax = np.asarray(jax.nn.log_softmax(table, axis=-1))
    for b, start in enumerate([3, 17]):
        chain, token = [], start
        for _ in range(6):
            token = int(np.argmax(np.asarray(table[token])))
            chain.append(token)
        expected = sum(log_softmax[prev, tok] for prev, tok in zip([start] + chain[:-1], chain))
        for n in range(3):
            assert out.tokens[b, n].tolist() == chain
            np.testing.assert_allclose(out.logprobs[b, n], expected, rtol=1e-5)


def _counter(vocab):
    """Deterministic model: after token t comes t + 1 (mod vocab); steps are passed through."""

    def tokens_to_logits(tokens, step, cache):
        logits = jax.nn.one_hot((tokens + 1) % vocab, vocab) * 30.0
        return logits, cache + 1

    return tokens_to_logits


@pytest.mark.heavy
def test_stop_ids_end_rows_pad_the_rest_and_the_loop_exits_early():
    vocab = 20
    first = jax.nn.one_hot(jnp.asarray([2, 6, 11]), vocab) * 30.0  # rows start at 2, 6 and 11
    sample = jax.jit(functools.partial(decoding.sample, _counter(vocab), max_new_tokens=10, pad_id=0))
    out = sample(first, jnp.int32(0), _seeds(3, 2), SamplingParams.make(0.7, stop_ids=[5, 9, 14]))
    assert out.tokens[0, 0].tolist() == [2, 3, 4, 5, 0, 0, 0, 0, 0, 0]
    assert out.tokens[1, 1].tolist() == [6, 7, 8, 9, 0, 0, 0, 0, 0, 0]
    assert out.tokens[2, 0].tolist() == [11, 12, 13, 14, 0, 0, 0, 0, 0, 0]
    assert out.lengths.tolist() == [[4, 4], [4, 4], [4, 4]]
    assert int(out.decode_steps) == 3  # stopped after the 4th token, not at max_new_tokens
    # Without stop ids every row runs to the end.
    out = sample(first, jnp.int32(0), _seeds(3, 2), SamplingParams.make(0.7))
    assert out.lengths.tolist() == [[10, 10]] * 3 and int(out.decode_steps) == 9
    assert out.tokens[0, 0].tolist() == [(2 + i) % vocab for i in range(10)]


@pytest.mark.heavy
def test_rows_that_end_at_different_times():
    vocab = 20
    first = jax.nn.one_hot(jnp.asarray([3, 12]), vocab) * 30.0
    out = jax.jit(functools.partial(decoding.sample, _counter(vocab), max_new_tokens=8))(
        first, jnp.int32(0), _seeds(2, 1), SamplingParams.make(0.0, stop_ids=[5, 19]))
    assert out.tokens[:, 0].tolist() == [[3, 4, 5, 0, 0, 0, 0, 0], [12, 13, 14, 15, 16, 17, 18, 19]]
    assert out.lengths[:, 0].tolist() == [3, 8]
    np.testing.assert_allclose(out.logprobs, 0.0, atol=1e-5)  # near-one-hot logits


def test_settings_change_without_recompiling():
    traces = []
    logits = np.log(np.array([0.5, 0.2, 0.2, 0.1]))

    def tokens_to_logits(tokens, step, cache):
        traces.append(1)
        return jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (tokens.shape[0], 4)), cache

    fn = jax.jit(functools.partial(decoding.sample, tokens_to_logits, max_new_tokens=4))
    first = jnp.asarray(logits, jnp.float32)[None]
    outs = [fn(first, None, _seeds(1, 64), s) for s in (
        SamplingParams.make(0.0), SamplingParams.make(1.0, 2), SamplingParams.make(0.5, 0, 0.6),
        SamplingParams.make(1.0, stop_ids=[3, 1]))]
    assert len(traces) == 1
    assert set(np.asarray(outs[0].tokens).ravel()) == {0}
    assert set(np.asarray(outs[1].tokens).ravel()) <= {0, 1, 2}
    assert set(np.asarray(outs[2].tokens).ravel()) == {0}


@pytest.mark.heavy
def test_a_row_depends_only_on_its_seed():
    logits, _ = _peaked_logits(300, 0.5)
    row = jnp.asarray(logits, jnp.float32)
    fn = _sampler(12, 64)
    seeds = _seeds(1, 6)
    out = np.asarray(fn(row[None], row, seeds, SamplingParams.make(1.0)).tokens)[0]
    # The same seeds in another order and batch size give the same rows.
    reordered = np.asarray(fn(row[None], row, seeds[:, ::-1][:, :4], SamplingParams.make(1.0)).tokens)[0]
    np.testing.assert_array_equal(reordered, out[::-1][:4])
    # Different run seeds draw different samples.
    other = np.asarray(fn(row[None], row, _seeds(1, 6, run_seed=1), SamplingParams.make(1.0)).tokens)[0]
    assert all((other[i] != out[i]).any() for i in range(6))
    assert len({tuple(row) for row in out}) == 6
    # A longer run starts with the same tokens (draw t depends on the seed and t only).
    longer = np.asarray(_sampler(16, 64)(row[None], row, seeds, SamplingParams.make(1.0)).tokens)[0]
    np.testing.assert_array_equal(longer[:, :12], out)


def test_derive_seed_is_stable_distinct_and_in_range():
    a = decoding.derive_seed(7, "HumanEval/3", 0)
    assert a == decoding.derive_seed(7, "HumanEval/3", 0)
    others = {decoding.derive_seed(r, t, i) for r in (7, 8) for t in ("HumanEval/3", "HumanEval/4") for i in (0, 1)}
    assert len(others) == 8 and a in others
    assert all(0 <= s < 2 ** 63 for s in others)
    with pytest.raises(TypeError):
        decoding.derive_seed(7, 3, 0)
    with pytest.raises(ValueError):
        decoding.derive_seed(7, "t", -1)


def test_seeds_of_existing_runs_do_not_move():
    """Runs on disk record these seeds (manifests, every Sample): a changed hash would stop them
    from resuming, so both functions are pinned to values written by earlier versions."""
    assert decoding.derive_seed(7, "HumanEval/3", 0) == 2457492137728620634
    assert decoding.stage_seed(0, "0:select") == 8342075942751060009
    assert decoding.stage_seed(0, "0:sample") != decoding.stage_seed(0, "1:sample")


def test_seed_key_data_is_the_prng_key():
    for seed in (0, 12345, 2 ** 32 - 1):
        np.testing.assert_array_equal(decoding.seed_key_data([seed])[0], jax.random.key_data(jax.random.PRNGKey(seed)))
    wide = decoding.seed_key_data([5, 2 ** 40 + 5])
    assert (wide[0] != wide[1]).any()  # the high word is kept
    with pytest.raises(ValueError):
        decoding.seed_key_data([2 ** 63])


def test_sampling_params_validation():
    with pytest.raises(ValueError, match="max_stop_ids"):
        SamplingParams.make(stop_ids=range(9))
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams.make(top_k=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams.make(top_p=0.0)


# ---------------------------------------------------------------------------------------------
# With the transformer.

CONFIG = ModelConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                     mlp_dim=64, sliding_window=6, global_layer_period=2)


@pytest.fixture(scope="module")
def model_and_params():
    return Transformer(CONFIG), init_params(CONFIG, jax.random.key(0))


def _generate(model, **static):
    return jax.jit(functools.partial(decoding.generate, model, **static))


@pytest.mark.heavy
def test_cached_greedy_equals_full_recomputation(model_and_params):
    model, params = model_and_params
    prompt = np.random.default_rng(1).integers(1, 128, size=5)
    out = _generate(model, max_new_tokens=9)(
        params, jnp.asarray(prompt[None], jnp.int32), jnp.asarray([5], jnp.int32), _seeds(1, 1),
        SamplingParams.make(0.0))
    full = jax.jit(lambda p, t: model.apply({"params": p}, t))
    sequence, logprob = list(prompt), 0.0
    for _ in range(9):
        buffer = np.zeros((1, 14), np.int32)  # causal: the padding after the sequence changes nothing
        buffer[0, :len(sequence)] = sequence
        logits = np.asarray(full(params, jnp.asarray(buffer))[0, len(sequence) - 1])
        token = int(np.argmax(logits))
        logprob += float(jax.nn.log_softmax(logits)[token])
        sequence.append(token)
    assert out.tokens[0, 0].tolist() == sequence[5:]
    np.testing.assert_allclose(out.logprobs[0, 0], logprob, rtol=1e-4)


@pytest.mark.heavy
def test_prompts_of_different_lengths_sample_as_if_alone(model_and_params):
    model, params = model_and_params
    rng = np.random.default_rng(2)
    lengths = [7, 2, 5]
    width = 9
    prompts = np.zeros((3, width), np.int32)
    for b, n in enumerate(lengths):
        prompts[b, :n] = rng.integers(1, 128, size=n)
    sampling = SamplingParams.make(0.9, 40, 0.95, stop_ids=[3])
    seeds = _seeds(3, 4, run_seed=5)
    batched = _generate(model, max_new_tokens=10)(params, jnp.asarray(prompts), jnp.asarray(lengths, jnp.int32),
                                                   seeds, sampling)
    alone = _generate(model, max_new_tokens=10)
    for b, n in enumerate(lengths):
        padded = np.zeros((1, 12), np.int32)  # alone in the batch, and padded differently
        padded[0, :n] = prompts[b, :n]
        single = alone(params, jnp.asarray(padded), jnp.asarray([n], jnp.int32), seeds[b:b + 1], sampling)
        np.testing.assert_array_equal(batched.tokens[b], single.tokens[0])
        np.testing.assert_array_equal(batched.lengths[b], single.lengths[0])
        np.testing.assert_allclose(batched.logprobs[b], single.logprobs[0], rtol=1e-4, atol=1e-4)
    # The samples of one prompt differ from each other (own seeds, shared prompt cache).
    assert len({tuple(np.asarray(row)) for row in batched.tokens[0]}) == 4


def test_generate_rejects_bad_prompt_lengths(model_and_params):
    model, params = model_and_params
    with pytest.raises(ValueError, match="prompt_lengths"):
        decoding.generate(model, params, jnp.ones((1, 4), jnp.int32), jnp.asarray([0], jnp.int32), _seeds(1, 1),
                          SamplingParams.make(), max_new_tokens=2)
