"""Sampling from a decoder with a KV cache: N samples per prompt, one compiled loop, per-row seeds.

Public API (``next_jax.infer`` calls ``generate``)::

    derive_seed(run_seed: int, task_id: str, sample_index: int) -> int        # stable 63-bit seed
    stage_seed(run_seed: int, stage: str) -> int                               # a stage's run seed
    seed_key_data(seeds) -> np.ndarray uint32 [..., 2]                         # threefry key data
    SamplingParams.make(temperature=1.0, top_k=0, top_p=1.0, stop_ids=(), max_stop_ids=8)
    SamplingConfig(num_samples=32, temperature=0.8, ...)  # how a run samples; .params(stop_ids)
    generate(model, params, prompts, prompt_lengths, seeds, sampling, *,
             max_new_tokens: int, top_k_cap: int = 64, pad_id: int = 0) -> SampleOutput
    sample(tokens_to_logits, first_logits, cache, seeds, sampling, *,
           max_new_tokens: int, top_k_cap: int = 64, pad_id: int = 0) -> SampleOutput

- ``prompts`` [B, P] int32, right-padded; ``prompt_lengths`` [B] int32, each in 1..P.
- ``seeds`` [B, N, 2] uint32 (``seed_key_data`` of the per-sample seeds): N samples per prompt; the
  prompt is prefilled once and its cache is shared by its N rows (never copied).
- ``SampleOutput``: ``tokens`` [B, N, max_new_tokens] int32 (``pad_id`` after a row's end),
  ``lengths`` [B, N] int32 (generated tokens, the stop token included), ``logprobs`` [B, N] float32
  (sum over generated tokens of log p(token) under the model itself, i.e. temperature 1 and no
  truncation, so scores are comparable across sampler settings), ``decode_steps`` [] int32 (model
  calls after the prefill; fewer than ``max_new_tokens - 1`` when every row stopped early).
- ``sampling`` holds runtime arrays, so changing temperature (0 = greedy), top_k (0 = off), top_p
  (1 = off) or the stop ids (padded with -1) reuses the compiled program. ``max_new_tokens``,
  ``top_k_cap``, ``pad_id``, B, N, P and the number of stop-id slots are static.
- ``tokens_to_logits(tokens [R], step, cache) -> (logits [R, V], cache)`` feeds each row's token
  generated at ``step`` (R = B * N, rows of one prompt adjacent) and returns the next logits;
  ``first_logits`` [B, V] are the logits after each prompt (from the prefill).
- Jit ``generate`` with the model and static arguments bound, e.g.
  ``partitioner.jit(functools.partial(generate, model, max_new_tokens=256))``.

Randomness: row r's draw at step t is ``uniform(fold_in(key_r, t))`` with key_r built from the row's
own seed, so a sample depends on its seed, its prompt and the settings only, never on its batch
neighbours or the device count. Each step draws one uniform number per row and inverts the CDF of
the truncated distribution.

Cost: the loop exits as soon as every row has emitted a stop id; rows that ended earlier ride along
in the batch (fixed shapes) until then. Sampling never sorts the vocabulary: the top ``top_k_cap``
candidates are found by a two-stage max (chunk maxima, then within the best chunks), and top-k /
top-p are applied within them. That is exact whenever ``top_k <= top_k_cap``, for greedy, and for
pure top-p whenever the candidates hold at least ``top_p`` of the mass; other rows take an exact
full-vocabulary path (thresholds by bisection) that only runs when some row needs it. The order
is transformers': temperature, then top-k, then top-p on what top-k kept; tokens tied with the
last one kept (at the top-k or top-p boundary) are all kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Optional, Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
TokensToLogits = Callable[[Array, Array, Any], Tuple[Array, Any]]

_CHUNK = 32  # vocabulary chunk for the two-stage candidate search


# ---------------------------------------------------------------------------------------------
# Seeds.


def derive_seed(run_seed: int, task_id: str, sample_index: int) -> int:
    """A stable 63-bit seed for one sample: the same inputs give the same seed on any machine."""
    if isinstance(run_seed, bool) or not isinstance(run_seed, (int, np.integer)):
        raise TypeError(f"derive_seed: run_seed must be an int, got {type(run_seed).__name__}")
    if not isinstance(task_id, str):
        raise TypeError(f"derive_seed: task_id must be a str, got {type(task_id).__name__}")
    if isinstance(sample_index, bool) or not isinstance(sample_index, (int, np.integer)) or sample_index < 0:
        raise ValueError(f"derive_seed: sample_index must be an int >= 0, got {sample_index!r}")
    message = json.dumps([int(run_seed), task_id, int(sample_index)]).encode("utf-8")
    digest = hashlib.blake2b(message, digest_size=8, person=b"next_jax.seed").digest()
    return int.from_bytes(digest, "big") >> 1


def stage_seed(run_seed: int, stage: str) -> int:
    """The run seed of one sampling stage of a run (``stage`` = ``"{iteration}:{name}"``), from
    which ``derive_seed`` then makes each sample's seed.

    Its hash (63 bits of sha256 of ``"{run_seed}:{stage}"``) is not derive_seed's on purpose: the
    stage seeds of existing runs were made with it and are recorded in their manifests and behind
    every sample seed, so another hash would stop every existing MODEL_DIR from resuming and change
    the published demo figures.
    """
    digest = hashlib.sha256(f"{run_seed}:{stage}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def seed_key_data(seeds) -> np.ndarray:
    """Threefry key data [..., 2] uint32 of integer seeds in [0, 2**63): (high word, low word).

    This is ``jax.random.PRNGKey(seed)``'s key data with 64-bit seeds intact (without
    ``jax_enable_x64``, PRNGKey keeps only the low 32 bits, so distinct seeds would collide).
    """
    seeds = np.asarray(seeds, dtype=object)
    flat = [int(s) for s in seeds.reshape(-1)]
    if any(s < 0 or s >= 2 ** 63 for s in flat):
        raise ValueError("seed_key_data: seeds must be in [0, 2**63)")
    data = np.array([[s >> 32, s & 0xFFFFFFFF] for s in flat], dtype=np.uint32).reshape(seeds.shape + (2,))
    return data


# ---------------------------------------------------------------------------------------------
# Settings and outputs.


@flax.struct.dataclass
class SamplingParams:
    temperature: Array  # [] float32; <= 0 means greedy
    top_k: Array  # [] int32; 0 means off
    top_p: Array  # [] float32; >= 1 means off
    stop_ids: Array  # [S] int32, unused slots -1

    @classmethod
    def make(cls, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             stop_ids: Sequence[int] = (), max_stop_ids: int = 8) -> "SamplingParams":
        stop_ids = [int(s) for s in stop_ids]
        if len(stop_ids) > max_stop_ids:
            raise ValueError(f"SamplingParams: {len(stop_ids)} stop ids but max_stop_ids={max_stop_ids}")
        if any(s < 0 for s in stop_ids):
            raise ValueError(f"SamplingParams: stop ids must be >= 0, got {stop_ids}")
        if top_k < 0:
            raise ValueError(f"SamplingParams: top_k must be >= 0 (0 = off), got {top_k}")
        if not 0 < top_p:
            raise ValueError(f"SamplingParams: top_p must be > 0 (1 = off), got {top_p}")
        padded = np.full((max_stop_ids,), -1, np.int32)
        padded[: len(stop_ids)] = stop_ids
        return cls(
            temperature=jnp.float32(temperature), top_k=jnp.int32(top_k), top_p=jnp.float32(top_p),
            stop_ids=jnp.asarray(padded),
        )


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How a run samples: the one settings object of every place that samples (``infer``, the
    pipeline, checkpoint evaluation, every stage of the self-training loop, the demo), bound once
    in gin with ``@decoding.SamplingConfig()``.

    Attributes:
      num_samples: answers per prompt (N).
      temperature: 0 = greedy; top_k: 0 = off; top_p: 1 = off.
      max_new_tokens: the answer budget (static: a new value compiles a new sampler).
      stop_ids: ids that end an answer; None = the vocabulary's stop ids, else its EOS.
      top_k_cap: candidates searched per step without touching the whole vocabulary (static; see
        the module docstring).
      batch_size: prompts per device step (a multiple of the data-parallel device count).
      chunk_size: prompts per output chunk, the unit of resumption of an interrupted run.
      seed: seeds every sample. ``infer`` uses it as the run seed (None: a fresh random one, kept
        on resume); the loop and the evaluations derive one seed per stage from it, so two stages
        never share samples.
    """

    num_samples: int = 32
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_ids: Optional[Tuple[int, ...]] = None
    top_k_cap: int = 64
    batch_size: int = 8
    chunk_size: int = 64
    seed: Optional[int] = 0

    def __post_init__(self):
        for name in ("num_samples", "max_new_tokens", "top_k_cap", "batch_size", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"SamplingConfig.{name} must be a positive int, got {value!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if not self.temperature >= 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not self.top_p > 0:
            raise ValueError(f"SamplingConfig.top_p must be > 0 (1 = off), got {self.top_p!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))
                                      or not 0 <= self.seed < 2 ** 63):
            raise ValueError(f"SamplingConfig.seed must be None or an int in [0, 2**63), got {self.seed!r}")
        if self.stop_ids is not None:  # a list from gin or JSON becomes a tuple: the settings stay hashable
            object.__setattr__(self, "stop_ids", tuple(int(s) for s in self.stop_ids))

    def greedy(self) -> "SamplingConfig":
        """One answer per prompt, the most likely token at every step."""
        return dataclasses.replace(self, num_samples=1, temperature=0.0, top_k=0, top_p=1.0)

    def resolve_stop_ids(self, vocabulary) -> list:
        """``stop_ids``, else the vocabulary's stop ids (a Hugging Face tokenizer's), else its EOS."""
        stop_ids = self.stop_ids
        if stop_ids is None:
            stop_ids = getattr(vocabulary, "stop_ids", None) or (
                [vocabulary.eos_id] if getattr(vocabulary, "eos_id", None) is not None else [])
        return [int(s) for s in stop_ids]

    def params(self, stop_ids: Sequence[int]) -> SamplingParams:
        """The runtime arrays of these settings (changing them reuses the compiled sampler)."""
        return SamplingParams.make(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                                   stop_ids=stop_ids, max_stop_ids=max(8, len(stop_ids)))


@flax.struct.dataclass
class SampleOutput:
    tokens: Array  # [B, N, max_new_tokens] int32
    lengths: Array  # [B, N] int32
    logprobs: Array  # [B, N] float32
    decode_steps: Array  # [] int32, model calls after the prefill


# ---------------------------------------------------------------------------------------------
# Choosing one token per row.


def _top_candidates(logits: Array, k: int) -> Tuple[Array, Array]:
    """The k largest logits per row, sorted descending, and their ids; exact, without a full top-k.

    Every one of the k largest values lies in a chunk whose maximum is among the k largest chunk
    maxima, so a top-k over chunk maxima and then over those chunks' entries finds them.
    """
    rows, vocab = logits.shape
    if vocab <= 4 * _CHUNK * k:
        return jax.lax.top_k(logits, k)
    chunks = -(-vocab // _CHUNK)
    padded = jnp.pad(logits, ((0, 0), (0, chunks * _CHUNK - vocab)), constant_values=-jnp.inf)
    blocks = padded.reshape(rows, chunks, _CHUNK)
    _, best = jax.lax.top_k(blocks.max(axis=-1), k)
    candidates = jnp.take_along_axis(blocks, best[:, :, None], axis=1).reshape(rows, k * _CHUNK)
    values, where = jax.lax.top_k(candidates, k)
    ids = jnp.take_along_axis(best, where // _CHUNK, axis=1) * _CHUNK + where % _CHUNK
    return values, ids


def _first_above(cumulative: Array, target: Array, weights: Array) -> Array:
    """Index of the first entry whose cumulative weight exceeds ``target`` (rows of [R, K]).

    Zero-weight entries can never be first; rounding that pushes ``target`` past the total lands on
    the last entry with weight.
    """
    index = jnp.sum(cumulative <= target[:, None], axis=-1)
    last = weights.shape[-1] - 1 - jnp.argmax((weights > 0)[:, ::-1], axis=-1)
    return jnp.minimum(index, last).astype(jnp.int32)


def _ordered_key(x: Array) -> Array:
    """uint32 keys with the same order as the float32 values."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    negative = (bits >> 31) == 1
    return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def _largest_key(keys: Array, holds: Callable[[Array], Array]) -> Array:
    """Per row, the largest uint32 threshold t with ``holds(t)`` true (holds(0) must be true and
    holds must be monotone: true up to some t, false after)."""
    rows = keys.shape[0]

    def body(_, bounds):
        lo, hi = bounds
        mid = lo + ((hi - lo) >> 1) + 1
        ok = holds(mid) & (lo < hi)
        open_ = lo < hi
        return jnp.where(ok, mid, lo), jnp.where(open_ & ~ok, mid - 1, hi)

    lo = jnp.zeros((rows,), jnp.uint32)
    hi = jnp.full((rows,), 0xFFFFFFFF, jnp.uint32)
    lo, _ = jax.lax.fori_loop(0, 32, body, (lo, hi))
    return lo


def _sample_full_vocab(logits: Array, uniform: Array, temperature: Array, top_k: Array, top_p: Array) -> Array:
    """Exact temperature/top-k/top-p sampling over the whole vocabulary, without sorting."""
    rows, vocab = logits.shape
    scaled = logits / jnp.maximum(temperature, 1e-6)

    def keep_top_k(scaled):
        keys = _ordered_key(scaled)
        k = jnp.minimum(top_k, vocab)
        kth = _largest_key(keys, lambda t: jnp.sum(keys >= t[:, None], axis=-1) >= k)
        return jnp.where(keys < kth[:, None], -jnp.inf, scaled)

    def keep_top_p(probs):
        keys = jax.lax.bitcast_convert_type(probs, jnp.uint32)  # probabilities are >= 0: bits are ordered
        target = top_p * jnp.sum(probs, axis=-1)
        cut = _largest_key(keys, lambda t: jnp.sum(jnp.where(keys >= t[:, None], probs, 0.0), axis=-1) >= target)
        return jnp.where(keys < cut[:, None], 0.0, probs)

    scaled = jax.lax.cond(top_k > 0, keep_top_k, lambda x: x, scaled)
    probs = jax.nn.softmax(scaled, axis=-1)
    probs = jax.lax.cond(top_p < 1, keep_top_p, lambda x: x, probs)

    # Inverse CDF in vocabulary order, two levels (chunk sums, then within the chosen chunk).
    chunks = -(-vocab // _CHUNK)
    blocks = jnp.pad(probs, ((0, 0), (0, chunks * _CHUNK - vocab))).reshape(rows, chunks, _CHUNK)
    sums = blocks.sum(axis=-1)
    cumulative = jnp.cumsum(sums, axis=-1)
    target = uniform * cumulative[:, -1]
    chunk = _first_above(cumulative, target, sums)
    inside = jnp.take_along_axis(blocks, chunk[:, None, None], axis=1)[:, 0]
    before = jnp.take_along_axis(cumulative - sums, chunk[:, None], axis=1)[:, 0]
    offset = _first_above(before[:, None] + jnp.cumsum(inside, axis=-1), target, inside)
    return chunk * _CHUNK + offset


def choose_tokens(logits: Array, uniform: Array, sampling: SamplingParams, top_k_cap: int) -> Array:
    """One token per row of ``logits`` [R, V] given one uniform number per row in [0, 1)."""
    logits = logits.astype(jnp.float32)
    rows, vocab = logits.shape
    cap = min(top_k_cap, vocab)
    temperature, top_k, top_p = sampling.temperature, sampling.top_k, sampling.top_p
    greedy = temperature <= 0
    values, ids = _top_candidates(logits, cap)
    scaled = values / jnp.maximum(temperature, 1e-6)
    rank = jnp.arange(cap)
    top_k_here = (top_k > 0) & (top_k <= cap)
    in_k = rank < jnp.where(top_k_here, top_k, cap)
    scaled = jnp.where(in_k, scaled, -jnp.inf)
    # Top-p is measured against the distribution top-k leaves: the candidates' own mass when top-k is
    # on, the whole vocabulary otherwise.
    full_lse = jax.nn.logsumexp(logits / jnp.maximum(temperature, 1e-6), axis=-1)
    reference = jnp.where(top_k_here, jax.nn.logsumexp(scaled, axis=-1), full_lse)
    probs = jnp.exp(scaled - reference[:, None])
    before = jnp.cumsum(probs, axis=-1) - probs
    keep = in_k & ((before < top_p) | (rank == 0))
    kept = jnp.where(keep, probs, 0.0)
    pick = _first_above(jnp.cumsum(kept, axis=-1), uniform * kept.sum(axis=-1), kept)
    fast = jnp.take_along_axis(ids, pick[:, None], axis=1)[:, 0]
    fast = jnp.where(greedy, ids[:, 0], fast)

    exact_here = greedy | top_k_here | ((top_k == 0) & (top_p < 1) & (probs.sum(axis=-1) >= top_p))
    slow = jax.lax.cond(
        jnp.all(exact_here),
        lambda: fast,
        lambda: _sample_full_vocab(logits, uniform, temperature, top_k, top_p),
    )
    return jnp.where(exact_here, fast, slow).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# The loop.


@flax.struct.dataclass
class _LoopState:
    step: Array  # index of the token produced next
    tokens: Array  # [R, L]
    last: Array  # [R] token produced at step - 1
    done: Array  # [R]
    lengths: Array  # [R]
    logprobs: Array  # [R]
    cache: Any


def sample(
    tokens_to_logits: TokensToLogits,
    first_logits: Array,
    cache: Any,
    seeds: Array,
    sampling: SamplingParams,
    *,
    max_new_tokens: int,
    top_k_cap: int = 64,
    pad_id: int = 0,
) -> SampleOutput:
    """Samples ``max_new_tokens`` at most for every (prompt, sample) row; see the module doc."""
    if max_new_tokens < 1:
        raise ValueError(f"sample: max_new_tokens must be >= 1, got {max_new_tokens}")
    if seeds.ndim != 3 or seeds.shape[-1] != 2:
        raise ValueError(f"sample: seeds must be [prompts, samples, 2] uint32 key data, got shape {seeds.shape}")
    batch, num_samples = seeds.shape[:2]
    if first_logits.shape[0] != batch:
        raise ValueError(f"sample: first_logits has {first_logits.shape[0]} rows but seeds has {batch} prompts")
    rows = batch * num_samples
    keys = jax.random.wrap_key_data(jnp.asarray(seeds, jnp.uint32).reshape(rows, 2))
    # Every draw up front, in one vectorised pass ([R, max_new_tokens]); inside the loop the PRNG
    # would cost ~100 tiny ops per step.
    steps = jnp.arange(max_new_tokens)
    uniforms = jax.vmap(lambda key: jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(key, t)))(steps))(keys)

    def produce(state: _LoopState, logits: Array, cache) -> _LoopState:
        uniform = jax.lax.dynamic_index_in_dim(uniforms, state.step, axis=1, keepdims=False)
        token = choose_tokens(logits, uniform, sampling, top_k_cap)
        logprob = jnp.take_along_axis(logits, token[:, None], axis=1)[:, 0] - jax.nn.logsumexp(logits, axis=-1)
        live = ~state.done
        token = jnp.where(live, token, pad_id)
        stopped = jnp.any(token[:, None] == sampling.stop_ids[None, :], axis=-1)
        return _LoopState(
            step=state.step + 1,
            tokens=jax.lax.dynamic_update_slice(state.tokens, token[:, None], (0, state.step)),
            last=token,
            done=state.done | (live & stopped),
            lengths=state.lengths + live.astype(jnp.int32),
            logprobs=state.logprobs + jnp.where(live, logprob, 0.0),
            cache=cache,
        )

    state = _LoopState(
        step=jnp.int32(0),
        tokens=jnp.full((rows, max_new_tokens), pad_id, jnp.int32),
        last=jnp.zeros((rows,), jnp.int32),
        done=jnp.zeros((rows,), bool),
        lengths=jnp.zeros((rows,), jnp.int32),
        logprobs=jnp.zeros((rows,), jnp.float32),
        cache=cache,
    )
    state = produce(state, jnp.repeat(first_logits.astype(jnp.float32), num_samples, axis=0), cache)

    def more(state: _LoopState) -> Array:
        return (state.step < max_new_tokens) & ~jnp.all(state.done)

    def advance(state: _LoopState) -> _LoopState:
        logits, cache = tokens_to_logits(state.last, state.step - 1, state.cache)
        return produce(state, logits.astype(jnp.float32), cache)

    state = jax.lax.while_loop(more, advance, state)
    return SampleOutput(
        tokens=state.tokens.reshape(batch, num_samples, max_new_tokens),
        lengths=state.lengths.reshape(batch, num_samples),
        logprobs=state.logprobs.reshape(batch, num_samples),
        decode_steps=state.step - 1,
    )


def generate(
    model,
    params,
    prompts: Array,
    prompt_lengths: Array,
    seeds: Array,
    sampling: SamplingParams,
    *,
    max_new_tokens: int,
    top_k_cap: int = 64,
    pad_id: int = 0,
) -> SampleOutput:
    """Prefills ``prompts`` once with ``model`` (a ``Transformer``) and samples N rows per prompt."""
    try:
        lengths = np.asarray(prompt_lengths)
    except (jax.errors.TracerArrayConversionError, RuntimeError):  # traced, or not on this host
        lengths = None
    if lengths is not None:
        if lengths.min() < 1 or lengths.max() > prompts.shape[1]:
            raise ValueError(
                f"generate: prompt_lengths must be in 1..{prompts.shape[1]} (the padded prompt width), "
                f"got min {lengths.min()} max {lengths.max()}"
            )
    num_samples = seeds.shape[1]
    first_logits, cache = model.apply(
        {"params": params}, prompts, prompt_lengths, num_samples, max_new_tokens, method="prefill"
    )

    def tokens_to_logits(tokens, step, cache):
        return model.apply({"params": params}, tokens, step, cache, method="decode_step")

    return sample(
        tokens_to_logits, first_logits, cache, seeds, sampling,
        max_new_tokens=max_new_tokens, top_k_cap=top_k_cap, pad_id=pad_id,
    )
