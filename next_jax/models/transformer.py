"""A decoder-only transformer in flax linen, covering Llama 3, Qwen2 and Gemma 2 by configuration.

Read top to bottom: RMSNorm, a linear layer with logical axes, attention (grouped-query, rotary,
optional QKV bias, soft-capping, sliding window), the gated MLP (SwiGLU or GeGLU), one decoder
layer (pre-norms, optional Gemma 2 post-norms), and the model with its three entry points:

- ``__call__(tokens, positions=None, segment_ids=None)``: logits of every position (training,
  scoring, and the reference the cached path is tested against);
- ``prefill(tokens, lengths, num_samples, max_new_tokens)``: runs right-padded prompts once and
  returns the logits after each prompt's last token plus a ``DecodeCache`` sized for
  ``num_samples`` continuations per prompt (see kv_cache.py);
- ``decode_step(tokens, step, cache)``: one new token per row through the cache.

Parameter names and logical axes are a contract the Hugging Face importer (hf_checkpoint.py)
relies on: ``layers_{i}/attn/q_proj/kernel`` with axes ('embed', 'heads', 'head_dim'), etc.; with
``config.scan_layers`` the same parameters are stacked as ``layers/attn/q_proj/kernel`` with axes
('layers', 'embed', 'heads', 'head_dim') and run by one ``nn.scan`` (stacking.py converts between
the two layouts). Activations are computed in ``config.dtype``; norms, softmax, rotary and logits
in float32.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from next_jax.models import attention, kv_cache
from next_jax.models.config import ModelConfig
from next_jax.models.rotary import apply_rotary, rotary_tables

Array = jax.Array

# ModelConfig.remat_policy -> what jax.checkpoint keeps of a layer for the backward pass.
REMAT_POLICIES = {
    "full": None,  # keep nothing: recompute the whole layer
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

# Activation logical axes.
EMBED_ACT = ("batch", "length", "act_embed")
HEADS_ACT = ("batch", "length", "act_heads", "act_head_dim")
KV_HEADS_ACT = ("batch", "length", "act_kv_heads", "act_head_dim")
MLP_ACT = ("batch", "length", "act_mlp")
LOGITS_ACT = ("batch", "length", "act_vocab")


def _constrain(x: Array, axes: Sequence[str]) -> Array:
    return nn.with_logical_constraint(x, tuple(axes))


def _softcap(x: Array, cap: Optional[float]) -> Array:
    return x if cap is None else cap * jnp.tanh(x / cap)


class RMSNorm(nn.Module):
    """x / rms(x) * scale; the scale multiplies directly (Gemma's 1 + w is folded in on import).

    The scale is always stored in float32, whatever the other parameters' dtype: Gemma's folded
    ``1 + w`` sits near 1.0, where bfloat16's spacing (2**-7) would shift every activation by up
    to 0.4%, and a norm scale costs only ``hidden_size`` numbers.
    """

    eps: float
    dtype: str

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (x.shape[-1],), jnp.float32
        )
        x = x.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (x * scale.astype(jnp.float32)).astype(self.dtype)


class Linear(nn.Module):
    """Contracts the last ``in_dims`` axes of x with a kernel [*in, *out] named by logical axes."""

    out_shape: Tuple[int, ...]
    kernel_axes: Tuple[str, ...]
    in_dims: int = 1
    use_bias: bool = False
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        in_shape = x.shape[x.ndim - self.in_dims:]
        n_in, n_out = len(in_shape), len(self.out_shape)
        init = nn.initializers.variance_scaling(
            1.0, "fan_in", "truncated_normal",
            in_axis=tuple(range(n_in)), out_axis=tuple(range(n_in, n_in + n_out)),
        )
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(init, self.kernel_axes), in_shape + tuple(self.out_shape),
            self.param_dtype,
        )
        # The leading (batch, length) axes are merged into one, so the weight gradient
        # x^T . dy contracts a single axis. With two, XLA canonicalises that product by
        # transposing dy into a [features, tokens] copy, and on the CPU those copies (fused
        # into the elementwise op that produced dy) cost about as much as the products.
        lead = x.shape[:x.ndim - n_in]
        x2 = x.reshape((math.prod(lead),) + in_shape)
        contract = (tuple(range(1, 1 + n_in)), tuple(range(n_in)))
        # float32 accumulation: exact for float32, and XLA:CPU's fast path for bfloat16 operands.
        y = jax.lax.dot_general(x2.astype(self.dtype), kernel.astype(self.dtype), (contract, ((), ())),
                                preferred_element_type=jnp.float32).astype(self.dtype)
        y = y.reshape(lead + tuple(self.out_shape))
        if self.use_bias:
            bias = self.param(
                "bias", nn.with_logical_partitioning(nn.initializers.zeros, self.kernel_axes[n_in:]),
                tuple(self.out_shape), self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y


class Attention(nn.Module):
    """Grouped-query attention. ``window`` (None = global) is a call argument, not an attribute:
    a Python int for a layer of its own, or a traced int when the layers are scanned and the
    window differs between them (Gemma 2's alternation)."""

    config: ModelConfig

    def setup(self):
        c = self.config
        common = dict(dtype=c.dtype, param_dtype=c.param_dtype)
        self.q_proj = Linear((c.num_heads, c.head_dim), ("embed", "heads", "head_dim"), use_bias=c.qkv_bias, **common)
        self.k_proj = Linear(
            (c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"), use_bias=c.qkv_bias, **common
        )
        self.v_proj = Linear(
            (c.num_kv_heads, c.head_dim), ("embed", "kv_heads", "head_dim"), use_bias=c.qkv_bias, **common
        )
        self.o_proj = Linear((c.hidden_size,), ("heads", "head_dim", "embed"), in_dims=2, **common)

    def _qkv(self, x: Array, cos: Array, sin: Array):
        q = _constrain(apply_rotary(self.q_proj(x), cos, sin), HEADS_ACT)
        k = _constrain(apply_rotary(self.k_proj(x), cos, sin), KV_HEADS_ACT)
        v = _constrain(self.v_proj(x), KV_HEADS_ACT)
        return q * jnp.asarray(self.config.attention_scale, q.dtype), k, v

    def __call__(self, x: Array, cos: Array, sin: Array, positions: Array,
                 segment_ids: Optional[Array], window=None) -> Tuple[Array, Array, Array]:
        """Full-sequence attention: causal, within each segment, within the window if any.

        Returns the output and this layer's keys/values (the prefill caches them).
        """
        c = self.config
        q, k, v = self._qkv(x, cos, sin)
        out = attention.attend(q, k, v, positions, segment_ids, window=window, softcap=c.attn_logit_softcap,
                               impl=c.attention_impl, chunk_size=c.attention_chunk_size)
        out = _constrain(out.astype(c.dtype), HEADS_ACT)
        return self.o_proj(out), k, v

    def decode(self, x: Array, cos: Array, sin: Array, cache: kv_cache.LayerCache, step: Array,
               prefix_lengths: Array, window=None,
               layer: Optional[Array] = None) -> Tuple[Array, kv_cache.LayerCache]:
        """One token per row (x [R, 1, hidden]) through the cache (slice ``layer`` of a stacked one)."""
        q, k, v = self._qkv(x, cos, sin)
        cache = kv_cache.write(cache, k[:, 0], v[:, 0], step, layer)
        view = cache if layer is None else kv_cache.layer_view(cache, layer)
        out = kv_cache.attend(
            q[:, 0], view, step, prefix_lengths, window=window, softcap=self.config.attn_logit_softcap
        )
        out = _constrain(out[:, None].astype(self.config.dtype), HEADS_ACT)
        return self.o_proj(out), cache


def _activation(name: str):
    return jax.nn.silu if name == "silu" else functools.partial(jax.nn.gelu, approximate=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _gated(gate: Array, up: Array, activation: str) -> Array:
    """act(gate) * up, whose backward pass keeps only gate and up (the matrix products' outputs).

    Differentiated automatically, act(gate) and its intermediate values (silu's sigmoid) are
    written out in the forward pass and read back in the backward; here the backward recomputes
    them from gate inside the one elementwise pass that produces both gradients.
    """
    return _activation(activation)(gate) * up


def _gated_fwd(gate, up, activation):
    return _gated(gate, up, activation), (gate, up)


def _gated_bwd(activation, residuals, g):
    gate, up = residuals
    act, act_vjp = jax.vjp(_activation(activation), gate)
    return act_vjp(g * up)[0], g * act


_gated.defvjp(_gated_fwd, _gated_bwd)


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with silu, GeGLU with tanh-approximated gelu."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.config
        common = dict(dtype=c.dtype, param_dtype=c.param_dtype)
        gate = Linear((c.mlp_dim,), ("embed", "mlp"), name="gate_proj", **common)(x)
        up = Linear((c.mlp_dim,), ("embed", "mlp"), name="up_proj", **common)(x)
        hidden = _constrain(_gated(gate, up, c.mlp_activation), MLP_ACT)
        return Linear((c.hidden_size,), ("mlp", "embed"), name="down_proj", **common)(hidden)


class DecoderLayer(nn.Module):
    config: ModelConfig

    def setup(self):
        c = self.config
        norm = dict(eps=c.norm_eps, dtype=c.dtype)
        self.pre_attn_norm = RMSNorm(**norm)
        self.attn = Attention(c)
        self.pre_mlp_norm = RMSNorm(**norm)
        self.mlp = GatedMLP(c)
        if c.use_post_norms:
            self.post_attn_norm = RMSNorm(**norm)
            self.post_mlp_norm = RMSNorm(**norm)

    def _mlp_residual(self, x: Array) -> Array:
        h = self.mlp(self.pre_mlp_norm(x))
        if self.config.use_post_norms:
            h = self.post_mlp_norm(h)
        return _constrain(x + h, EMBED_ACT)

    def _attn_residual(self, x: Array, h: Array) -> Array:
        if self.config.use_post_norms:
            h = self.post_attn_norm(h)
        return _constrain(x + h, EMBED_ACT)

    def __call__(self, x, cos, sin, positions, segment_ids, window=None):
        h, k, v = self.attn(self.pre_attn_norm(x), cos, sin, positions, segment_ids, window)
        return self._mlp_residual(self._attn_residual(x, h)), (k, v)

    def decode(self, x, cos, sin, cache, step, prefix_lengths, window=None, layer=None):
        h, cache = self.attn.decode(self.pre_attn_norm(x), cos, sin, cache, step, prefix_lengths, window, layer)
        return self._mlp_residual(self._attn_residual(x, h)), cache


class ScannedLayer(DecoderLayer):
    """The body of the layer scan: one layer, its parameters sliced from the stacked ones.

    ``nn.scan`` lifts one method, so this one serves every entry point, told apart by the
    structure of what it is given (static under tracing):

    - full sequence: ``carry`` is the hidden state, ``shared`` holds cos/sin/positions/segment_ids,
      ``per_layer`` the layer's window (absent when no layer has one); returns its keys/values;
    - decoding: ``carry`` is {'x', 'cache'} with the stacked cache, ``shared`` holds cos/sin/step/
      prefix_lengths, ``per_layer`` the layer index (which cache slice to write and read) and window.
    """

    def __call__(self, carry, shared, per_layer):
        window = per_layer.get("window")
        if isinstance(carry, dict):
            x, cache = DecoderLayer.decode(self, carry["x"], shared["cos"], shared["sin"], carry["cache"],
                                           shared["step"], shared["prefix_lengths"], window, per_layer["index"])
            return {"x": x, "cache": cache}, None
        return DecoderLayer.__call__(self, carry, shared["cos"], shared["sin"], shared["positions"],
                                     shared["segment_ids"], window)


# Window of a global layer when the scanned layers' windows differ: larger than any position gap.
_NO_WINDOW = jnp.iinfo(jnp.int32).max


class Transformer(nn.Module):
    config: ModelConfig

    def setup(self):
        c = self.config
        self.token_embed = nn.Embed(
            c.vocab_size, c.hidden_size, dtype=c.dtype, param_dtype=c.param_dtype,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(stddev=c.hidden_size ** -0.5), ("vocab", "embed")
            ),
        )
        if c.scan_layers:
            self.layers = self._scanned_layers()
        else:
            layer_cls = DecoderLayer
            if c.remat_policy != "none":
                # Recompute the layer's activations in the backward pass instead of keeping them
                # all; the policy says which results are worth keeping (e.g. matmul outputs).
                layer_cls = nn.remat(DecoderLayer, policy=REMAT_POLICIES[c.remat_policy], prevent_cse=True)
            self.layers = [layer_cls(c, name=f"layers_{i}") for i in range(c.num_layers)]
        self.final_norm = RMSNorm(eps=c.norm_eps, dtype=c.dtype)
        if not c.tie_embeddings:
            self.lm_head = Linear((c.vocab_size,), ("embed", "vocab"), dtype=c.dtype, param_dtype=c.param_dtype)

    def _scanned_layers(self) -> nn.Module:
        """All layers as one module: parameters stacked on a leading ``layers`` axis, one compiled
        layer body run ``num_layers`` times (compile time and program size independent of depth)."""
        c = self.config
        body = ScannedLayer
        if c.remat_policy != "none":
            # Inside a scan, the loop already keeps XLA from merging the recomputation with the
            # forward pass, so prevent_cse (which costs fusion) is not needed.
            body = nn.remat(ScannedLayer, policy=REMAT_POLICIES[c.remat_policy], prevent_cse=False)
        return nn.scan(
            body, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=(nn.broadcast, 0),
            length=c.num_layers, metadata_params={nn.PARTITION_NAME: "layers"},
        )(c, name="layers")

    # -- pieces shared by the entry points --------------------------------------------------

    def _embed(self, tokens: Array) -> Array:
        x = self.token_embed(tokens)
        if self.config.embed_scale:
            x = x * jnp.asarray(self.config.embedding_multiplier, x.dtype)
        return _constrain(x, EMBED_ACT)

    def _logits(self, x: Array) -> Array:
        x = self.final_norm(x)
        if self.config.tie_embeddings:
            table = self.token_embed.embedding
            logits = jnp.einsum("btd,vd->btv", x, table.astype(x.dtype), preferred_element_type=jnp.float32)
        else:
            logits = self.lm_head(x)
        logits = _softcap(logits.astype(jnp.float32), self.config.final_logit_softcap)
        return _constrain(logits, LOGITS_ACT)

    def _window(self, layer: int) -> Optional[int]:
        c = self.config
        return c.sliding_window if c.is_sliding_layer(layer) else None

    def _scanned_inputs(self) -> dict:
        """Per-layer inputs of the scan: the layer index and, if any layer has one, the window."""
        c = self.config
        per_layer = {"index": jnp.arange(c.num_layers, dtype=jnp.int32)}
        if c.sliding_window is not None:
            windows = [self._window(i) for i in range(c.num_layers)]
            per_layer["window"] = jnp.asarray([_NO_WINDOW if w is None else w for w in windows], jnp.int32)
        return per_layer

    def _run_layers(self, x: Array, positions: Array, segment_ids: Optional[Array]):
        """(hidden state, the layers' keys/values): a list of (k, v), or (k, v) stacked on the
        leading layer axis when the layers are scanned."""
        cos, sin = rotary_tables(positions, self.config)
        if self.config.scan_layers:
            shared = {"cos": cos, "sin": sin, "positions": positions, "segment_ids": segment_ids}
            per_layer = self._scanned_inputs()
            del per_layer["index"]
            return self.layers(x, shared, per_layer)
        kvs = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, positions, segment_ids, self._window(i))
            kvs.append(kv)
        return x, kvs

    # -- entry points -----------------------------------------------------------------------

    def __call__(self, tokens: Array, positions: Optional[Array] = None,
                 segment_ids: Optional[Array] = None) -> Array:
        """Logits [B, T, vocab] (float32) of every position of ``tokens`` [B, T].

        ``positions`` default to 0..T-1; with packed examples pass each token's position in its
        example and ``segment_ids`` (attention stays within a segment).
        """
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        x, _ = self._run_layers(self._embed(tokens), positions, segment_ids)
        return self._logits(x)

    def prefill(self, tokens: Array, lengths: Array, num_samples: int,
                max_new_tokens: int) -> Tuple[Array, kv_cache.DecodeCache]:
        """Runs right-padded prompts ``tokens`` [B, P] of ``lengths`` [B] (each >= 1) once.

        Returns the logits [B, vocab] after each prompt's last token, and a cache with room for
        ``num_samples`` rows per prompt and ``max_new_tokens - 1`` fed tokens each.
        """
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        x, kvs = self._run_layers(self._embed(tokens), positions, None)
        last = jnp.take_along_axis(x, (lengths - 1)[:, None, None].astype(jnp.int32), axis=1)
        logits = self._logits(last)[:, 0]
        slots = max(max_new_tokens - 1, 1)
        if self.config.scan_layers:
            layers = kv_cache.new_layer_cache(*kvs, num_samples, slots)
        else:
            layers = tuple(kv_cache.new_layer_cache(k, v, num_samples, slots) for k, v in kvs)
        return logits, kv_cache.DecodeCache(prefix_lengths=lengths.astype(jnp.int32), layers=layers)

    def decode_step(self, tokens: Array, step: Array,
                    cache: kv_cache.DecodeCache) -> Tuple[Array, kv_cache.DecodeCache]:
        """Feeds ``tokens`` [R] (the tokens generated at ``step``) and returns the next logits [R, vocab]."""
        positions = cache.row_positions(step)[:, None]
        cos, sin = rotary_tables(positions, self.config)
        x = self._embed(tokens[:, None])
        if self.config.scan_layers:
            shared = {"cos": cos, "sin": sin, "step": step, "prefix_lengths": cache.prefix_lengths}
            carry, _ = self.layers({"x": x, "cache": cache.layers}, shared, self._scanned_inputs())
            return self._logits(carry["x"])[:, 0], cache.replace(layers=carry["cache"])
        layers = []
        for i, (layer, layer_cache) in enumerate(zip(self.layers, cache.layers)):
            x, layer_cache = layer.decode(x, cos, sin, layer_cache, step, cache.prefix_lengths, self._window(i))
            layers.append(layer_cache)
        return self._logits(x)[:, 0], cache.replace(layers=tuple(layers))


def init_variables(config: ModelConfig, rng: jax.Array) -> dict:
    """The model's boxed variables (with logical axes): the one place the model is initialised.

    Wrap it in ``jax.eval_shape`` for shapes only, or hand it to ``Partitioner.init`` to create the
    parameters directly in their shards.
    """
    return Transformer(config).init(rng, jnp.zeros((1, 1), jnp.int32))


def init_params(config: ModelConfig, rng: jax.Array) -> dict:
    """Unboxed random parameters on the default device (tests and small demos; sharded runs use
    ``random_params``)."""
    return jax.jit(lambda rng: nn.unbox(init_variables(config, rng))["params"])(rng)


def abstract_params(config: ModelConfig, partitioner):
    """(ShapeDtypeStructs with shardings, logical axes) of the ``params`` collection."""
    abstract, logical = partitioner.init_abstract(functools.partial(init_variables, config), jax.random.key(0))
    return abstract["params"], logical["params"]


def random_params(config: ModelConfig, partitioner, seed: int = 0):
    """Freshly initialised parameters, born sharded (tests, demos, benchmarks)."""
    return partitioner.init(functools.partial(init_variables, config), jax.random.key(seed))["params"]


def count_params(config: ModelConfig) -> int:
    shapes = nn.unbox(jax.eval_shape(lambda rng: init_variables(config, rng), jax.random.key(0)))["params"]
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
