"""Sampling throughput: next_jax against transformers ``generate`` on the same weights, same run.

Workload: two Llama-shaped presets with random weights, vocab 32000, float32 —
S (hidden 512, 8 layers, 8 heads, 2 KV heads, MLP 1408) and M (768, 12, 12, 4, 2048) — 8 prompts
of 256 tokens, 8 samples each (64 rows), temperature 0.8, top-k 50, top-p 0.95, exactly 128 new
tokens (no stop id). Each preset is built once as a transformers ``LlamaForCausalLM``
(``torch.manual_seed``), saved with ``save_pretrained`` and imported into next_jax with the
Hugging Face importer, so both sides run the same weights. Torch gets
``torch.set_num_threads(cores)``; XLA uses the same cores. Timed runs alternate between the two
(next_jax, transformers, next_jax, ...) so that background load on a shared machine hits both alike;
tokens/s are from the median run, and the load average is reported.

The machine's bound is measured in the same run (memory bandwidth: a jitted read of a large
array; matmul rates: a 2048^3 product for prefill and a 64-row decode-shaped product for the
decode steps) and applied per preset as

    bound_s = prefill_flops / peak_gemm
              + (new_tokens - 1) * max(step_flops / decode_gemm, step_bytes / bandwidth)
    bound_tok_s = rows * new_tokens / bound_s

with step_flops = 2 * rows * (layer params + lm_head) + 4 * rows * layers * context * heads * head_dim,
step_bytes = 4 * (layer params + lm_head) + the KV cache read, and prefill_flops for the 8 prompts
(prefilled once). Prints one JSON line; progress goes to stderr.

    python -m next_jax.benchmarks.decoding --repeats=3 --presets=S,M
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

PRESETS = {
    "S": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
              intermediate_size=1408),
    "M": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
              intermediate_size=2048),
    # Not a measurement: a seconds-long run that checks the benchmark itself still works.
    "XS": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=128),
}
VOCAB = 32000
PROMPTS, PROMPT_LEN, SAMPLES, NEW_TOKENS = 8, 256, 8, 128
TEMPERATURE, TOP_K, TOP_P = 0.8, 50, 0.95


def log(message: str) -> None:
    print(f"[decoding benchmark] {message}", file=sys.stderr, flush=True)


def _timed(fn, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------------------------------
# Machine limits.


def measure_limits(small: bool = False) -> dict:
    """Memory bandwidth and matmul rates of this machine (``small``: quick and rough, smoke only)."""
    import jax
    import jax.numpy as jnp

    def read_rate(array):
        read = jax.jit(lambda x: jnp.sum(x))
        read(array).block_until_ready()
        return array.nbytes / min(_timed(lambda: read(array).block_until_ready(), 5))

    bandwidth = read_rate(jnp.ones(((8 if small else 128) * 1024 * 1024,), jnp.float32))  # 512 MiB

    def gemm_rate(m, k, n, reps):
        a = jnp.ones((m, k), jnp.float32) * 0.5
        b = jnp.ones((k, n), jnp.float32) * 0.5
        f = jax.jit(lambda a, b: a @ b)
        f(a, b).block_until_ready()
        return 2 * m * k * n / min(_timed(lambda: f(a, b).block_until_ready(), reps))

    return dict(
        bandwidth_gb_s=bandwidth / 1e9,
        gemm_2048_gflop_s=(gemm_rate(512, 512, 512, 2) if small else gemm_rate(2048, 2048, 2048, 5)) / 1e9,
        gemm_64row_gflop_s=(gemm_rate(64, 512, 2048, 2) if small else gemm_rate(64, 2048, 8192, 20)) / 1e9,
    )


def bound(preset: dict, limits: dict) -> dict:
    d, layers = preset["hidden_size"], preset["num_hidden_layers"]
    heads, kv_heads, mlp = preset["num_attention_heads"], preset["num_key_value_heads"], preset["intermediate_size"]
    head_dim = d // heads
    layer_params = layers * (d * (heads + 2 * kv_heads) * head_dim + heads * head_dim * d + 3 * d * mlp)
    rows = PROMPTS * SAMPLES
    prefill_tokens = PROMPTS * PROMPT_LEN
    prefill_flops = (2 * layer_params * prefill_tokens + 2 * PROMPTS * VOCAB * d
                     + 2 * layers * PROMPTS * PROMPT_LEN * PROMPT_LEN * heads * head_dim)  # causal QK^T + AV
    step_flops = 2 * rows * (layer_params + d * VOCAB)
    step_bytes = 4 * (layer_params + d * VOCAB)
    total = prefill_flops / (limits["gemm_2048_gflop_s"] * 1e9)
    for step in range(1, NEW_TOKENS):
        context = PROMPT_LEN + step
        flops = step_flops + 4 * rows * layers * context * heads * head_dim
        kv_bytes = 4 * layers * 2 * kv_heads * head_dim * (PROMPTS * PROMPT_LEN + rows * step)
        total += max(flops / (limits["gemm_64row_gflop_s"] * 1e9),
                     (step_bytes + kv_bytes) / (limits["bandwidth_gb_s"] * 1e9))
    return dict(bound_tok_s=rows * NEW_TOKENS / total, bound_s=total, decode_step_gflop=step_flops / 1e9,
                prefill_gflop=prefill_flops / 1e9)


# ---------------------------------------------------------------------------------------------
# The two samplers.


def build_hf_model(preset: dict):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, max_position_embeddings=2048, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation="sdpa", **preset,
    )
    return LlamaForCausalLM(config).float().eval()


def transformers_sampler(model, prompts):
    """A warmed-up callable running transformers ``generate`` on the workload."""
    import torch

    ids = torch.as_tensor(prompts, dtype=torch.long)
    mask = torch.ones_like(ids)

    def generate(new_tokens=NEW_TOKENS):
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=TEMPERATURE, top_k=TOP_K,
                top_p=TOP_P, num_return_sequences=SAMPLES, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, use_cache=True, pad_token_id=0,
            )
        assert out.shape == (PROMPTS * SAMPLES, PROMPT_LEN + new_tokens), out.shape
        return out

    generate(2)  # warm-up
    return generate


def next_jax_sampler(checkpoint_dir: str, prompts) -> tuple:
    """(a compiled callable running next_jax on the workload, seconds of its first call)."""
    # Deferred with jax: --help and the torch side never start XLA.
    import jax
    import jax.numpy as jnp

    from next_jax import decoding
    from next_jax.models.hf_checkpoint import load_hf_checkpoint
    from next_jax.models.transformer import Transformer

    config, params = load_hf_checkpoint(checkpoint_dir)
    model = Transformer(config)
    generate = jax.jit(functools.partial(decoding.generate, model, max_new_tokens=NEW_TOKENS))
    tokens = jnp.asarray(prompts, jnp.int32)
    lengths = jnp.full((PROMPTS,), PROMPT_LEN, jnp.int32)
    sampling = decoding.SamplingParams.make(temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P)
    run_seed = int.from_bytes(os.urandom(4), "little")
    state = {"call": 0}

    def call():
        state["call"] += 1
        seeds = decoding.seed_key_data([
            [decoding.derive_seed(run_seed, f"bench-{state['call']}-{b}", n) for n in range(SAMPLES)]
            for b in range(PROMPTS)
        ])
        out = generate(params, tokens, lengths, jnp.asarray(seeds), sampling)
        out.tokens.block_until_ready()
        return out

    start = time.perf_counter()
    out = call()  # compile + first run
    first_s = time.perf_counter() - start
    if not bool(jnp.all(out.lengths == NEW_TOKENS)):
        raise RuntimeError("next_jax produced fewer than NEW_TOKENS tokens in some row")
    return call, first_s


def _define_flags() -> None:
    flags.DEFINE_integer("repeats", 3, "Timed runs of each sampler per preset (median reported).")
    flags.DEFINE_list("presets", ["S", "M"], f"Model presets to run, of {sorted(PRESETS)}.")
    flags.DEFINE_enum("workload", "full", ["full", "smoke"],
                      "smoke: 2 prompts of 16 tokens, 2 samples, 4 new tokens; checks that the benchmark "
                      "runs (with --presets=XS, in seconds) and measures nothing.")
    flags.register_validator("presets", lambda names: set(names) <= set(PRESETS),
                             f"--presets: each must be one of {sorted(PRESETS)}")


def _main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    args = flags.FLAGS
    if args.workload == "smoke":
        global PROMPTS, PROMPT_LEN, SAMPLES, NEW_TOKENS
        PROMPTS, PROMPT_LEN, SAMPLES, NEW_TOKENS = 2, 16, 2, 4

    import jax
    import torch

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    load_before = os.getloadavg()
    log(f"load average {load_before}, {cores} cores, jax devices {jax.devices()}")
    limits = measure_limits(small=args.workload == "smoke")
    log(f"limits {limits}")
    result = dict(
        benchmark="decoding", jax=jax.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(), repeats=args.repeats,
        workload=dict(prompts=PROMPTS, prompt_len=PROMPT_LEN, samples=SAMPLES, new_tokens=NEW_TOKENS,
                      temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P, vocab=VOCAB, dtype="float32"),
        **{k: round(v, 1) for k, v in limits.items()},
    )
    import transformers

    result["transformers"] = transformers.__version__
    ratios = []
    rng = np.random.default_rng(1234)
    tokens_out = PROMPTS * SAMPLES * NEW_TOKENS
    for name in args.presets:
        preset = PRESETS[name]
        prompts = rng.integers(3, VOCAB, size=(PROMPTS, PROMPT_LEN))
        hf_model = build_hf_model(preset)
        n_params = sum(p.numel() for p in hf_model.parameters())
        with tempfile.TemporaryDirectory() as tmp:
            hf_model.save_pretrained(tmp)
            log(f"{name}: {n_params / 1e6:.1f}M params; compiling next_jax, warming up transformers")
            ours_call, first_s = next_jax_sampler(tmp, prompts)
        theirs_call = transformers_sampler(hf_model, prompts)
        # Interleaved, so both see the same background load on a shared machine.
        ours, theirs = [], []
        for repeat in range(args.repeats):
            ours += _timed(ours_call, 1)
            theirs += _timed(theirs_call, 1)
            log(f"{name} run {repeat + 1}: next_jax {ours[-1]:.2f} s, transformers {theirs[-1]:.2f} s, "
                f"load {os.getloadavg()[0]:.2f}")
        del hf_model, ours_call, theirs_call
        ours_tok_s = tokens_out / float(np.median(ours))
        theirs_tok_s = tokens_out / float(np.median(theirs))
        b = bound(preset, limits)
        ratio = ours_tok_s / theirs_tok_s
        ratios.append(ratio)
        result[name] = dict(
            params_m=round(n_params / 1e6, 2),
            next_jax_tok_s=round(ours_tok_s, 1),
            transformers_tok_s=round(theirs_tok_s, 1),
            ratio=round(ratio, 2),
            next_jax_runs_s=[round(t, 3) for t in ours],
            transformers_runs_s=[round(t, 3) for t in theirs],
            next_jax_first_call_s=round(first_s, 2),
            bound_tok_s=round(b["bound_tok_s"], 1),
            fraction_of_bound=round(ours_tok_s / b["bound_tok_s"], 3),
            decode_step_gflop=round(b["decode_step_gflop"], 2),
            prefill_gflop=round(b["prefill_gflop"], 1),
        )
    result["ratio_vs_transformers_min"] = round(min(ratios), 2)
    result["load_avg_before"] = [round(x, 2) for x in load_before]
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["bound_formula"] = (
        "bound_s = prefill_flops/gemm_2048 + sum over decode steps of max(step_flops/gemm_64row, "
        "step_bytes/bandwidth); bound_tok_s = rows*new_tokens/bound_s"
    )
    print(json.dumps(result))


def main(argv=None) -> None:
    _define_flags()
    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
