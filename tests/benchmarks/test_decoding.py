"""The decoding benchmark's workload and bound arithmetic (the benchmark itself runs by hand:
``python -m next_jax.benchmarks.decoding``)."""

import pytest

from next_jax.benchmarks import decoding as bench


def _layer_params(p):
    head_dim = p["hidden_size"] // p["num_attention_heads"]
    attn = p["hidden_size"] * head_dim * (2 * p["num_attention_heads"] + 2 * p["num_key_value_heads"])
    return p["num_hidden_layers"] * (attn + 3 * p["hidden_size"] * p["intermediate_size"])


def test_presets_are_the_issue_shapes():
    # Matmul parameters: all but norms and the input embedding (the input embedding costs no FLOPs).
    assert _layer_params(bench.PRESETS["S"]) / 1e6 == pytest.approx(22.54, abs=0.01)
    assert _layer_params(bench.PRESETS["M"]) / 1e6 == pytest.approx(75.50, abs=0.01)
    assert (bench.PROMPTS, bench.PROMPT_LEN, bench.SAMPLES, bench.NEW_TOKENS) == (8, 256, 8, 128)
    assert (bench.TEMPERATURE, bench.TOP_K, bench.TOP_P, bench.VOCAB) == (0.8, 50, 0.95, 32000)


def test_bound_follows_its_formula():
    limits = {"bandwidth_gb_s": 1e9, "gemm_2048_gflop_s": 1e9, "gemm_64row_gflop_s": 100.0}  # compute-bound
    s = bench.bound(bench.PRESETS["S"], limits)
    rows = bench.PROMPTS * bench.SAMPLES
    step = 2 * rows * (_layer_params(bench.PRESETS["S"]) + 512 * bench.VOCAB)
    assert s["decode_step_gflop"] == pytest.approx(step / 1e9)
    # With free prefill and bandwidth, the bound is the decode FLOPs (plus attention) at 100 GFLOP/s.
    decode_only = (bench.NEW_TOKENS - 1) * step / 100e9
    assert decode_only < s["bound_s"] < 1.1 * decode_only  # attention adds a few percent
    slower = bench.bound(bench.PRESETS["S"], {**limits, "gemm_64row_gflop_s": 50.0})
    assert slower["bound_tok_s"] == pytest.approx(s["bound_tok_s"] / 2, rel=0.01)
    assert bench.bound(bench.PRESETS["M"], limits)["bound_tok_s"] < s["bound_tok_s"]
