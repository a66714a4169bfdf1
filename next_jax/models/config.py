"""The architecture of a decoder-only transformer, as one frozen value.

One ``ModelConfig`` describes every family next_jax runs (Llama 3, Qwen2 / Qwen2.5-Coder, Gemma 2,
and the tiny CPU model): the differences between them are fields, not subclasses, so a gin preset
or a Hugging Face ``config.json`` maps onto it field by field. The value is hashable (it is a
static argument of jitted functions and an attribute of flax modules), which is why
``rope_scaling`` is stored as a ``FrozenDict``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

import jax.numpy as jnp
from flax.core import FrozenDict

MLP_ACTIVATIONS = ("silu", "gelu_tanh")
LAYER_TYPES = ("full_attention", "sliding_attention")
ATTENTION_IMPLS = ("xla", "chunked", "fused")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
# Fields that say how the model runs rather than what it computes: a checkpoint's config.json
# cannot contradict them.
RUNTIME_FIELDS = ("dtype", "param_dtype", "max_seq_len", "attention_impl", "attention_chunk_size", "remat_policy",
                  "scan_layers")
# Rotary variants the model implements (the ``rope_type`` of a Hugging Face ``rope_scaling``).
# 'dynamic' (dynamic NTK) is deliberately absent: its frequencies change with the current sequence
# length, so keys cached at one length disagree with queries at another.
ROPE_TYPES = ("default", "linear", "llama3", "yarn")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and variants of one decoder-only transformer.

    Attributes mirror the Hugging Face names where one exists (config.json keys). Gemma's
    quirks are plain fields: ``embed_scale`` multiplies embeddings by sqrt(hidden_size),
    ``query_pre_attn_scalar`` replaces head_dim in the attention scale, the two soft-caps squash
    attention scores and final logits with ``cap * tanh(x / cap)``, ``use_post_norms`` adds the
    norms after attention and MLP, and ``sliding_window`` with ``global_layer_period`` gives its
    local/global alternation.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_dim: int
    mlp_activation: str = "silu"
    norm_eps: float = 1e-6
    rope_theta: float = 10_000.0
    # None, or a Hugging Face style dict: {'rope_type': 'llama3'|'linear'|'yarn', 'factor': ..., ...}.
    rope_scaling: Optional[Mapping[str, Any]] = None
    tie_embeddings: bool = False
    qkv_bias: bool = False
    embed_scale: bool = False
    attn_logit_softcap: Optional[float] = None
    final_logit_softcap: Optional[float] = None
    # Attention scores are scaled by query_pre_attn_scalar**-0.5 (default head_dim**-0.5).
    query_pre_attn_scalar: Optional[float] = None
    # Sliding-window attention: a key is visible when query_pos - key_pos < sliding_window.
    sliding_window: Optional[int] = None
    # With a window: 0 = every layer is local; p > 0 = layer i is global iff (i + 1) % p == 0
    # (Gemma 2: 2, i.e. even layers local). ``layer_types`` (HF names, one per layer) overrides it.
    global_layer_period: int = 0
    layer_types: Optional[tuple] = None
    use_post_norms: bool = False
    max_seq_len: int = 8192
    dtype: str = "float32"  # activations (matrix products accumulate in float32)
    param_dtype: str = "float32"  # norm scales are float32 whatever this says
    # How the model runs, not what it computes (free to differ from a checkpoint's config):
    # attention 'xla' | 'chunked' (queries attention_chunk_size at a time) | 'fused'
    # (jax.nn.dot_product_attention); remat_policy 'none' | 'full' | 'dots' | 'dots_no_batch'.
    attention_impl: str = "xla"
    attention_chunk_size: int = 512
    remat_policy: str = "none"
    # scan_layers: the layers' parameters stacked on a leading 'layers' axis and run by one
    # nn.scan (with the remat policy inside its body) instead of a Python loop of num_layers
    # modules. It changes the parameter tree's layout, not its meaning: models/stacking.py
    # converts between the two layouts, so a checkpoint saved in either loads into either.
    scan_layers: bool = False

    def __post_init__(self):
        def fail(field: str, message: str):
            raise ValueError(f"ModelConfig.{field}: {message}")

        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "mlp_dim", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, f"must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            fail("num_kv_heads", f"{self.num_kv_heads} does not divide num_heads={self.num_heads}")
        if self.head_dim % 2:
            fail("head_dim", f"rotary embeddings need an even head_dim, got {self.head_dim}")
        if self.mlp_activation not in MLP_ACTIVATIONS:
            fail("mlp_activation", f"{self.mlp_activation!r} is not one of {MLP_ACTIVATIONS}")
        for name in ("attn_logit_softcap", "final_logit_softcap", "query_pre_attn_scalar"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                fail(name, f"must be None or > 0, got {value!r}")
        if self.sliding_window is not None and self.sliding_window < 1:
            fail("sliding_window", f"must be None or >= 1, got {self.sliding_window!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            fail("attention_impl", f"{self.attention_impl!r} is not one of {ATTENTION_IMPLS}")
        if self.remat_policy not in REMAT_POLICIES:
            fail("remat_policy", f"{self.remat_policy!r} is not one of {REMAT_POLICIES}")
        if not isinstance(self.scan_layers, bool):
            fail("scan_layers", f"must be a bool, got {self.scan_layers!r}")
        if isinstance(self.attention_chunk_size, bool) or self.attention_chunk_size < 1:
            fail("attention_chunk_size", f"must be a positive int, got {self.attention_chunk_size!r}")
        if self.global_layer_period < 0:
            fail("global_layer_period", f"must be >= 0, got {self.global_layer_period}")
        if self.layer_types is not None:
            types = tuple(self.layer_types)
            if len(types) != self.num_layers:
                fail("layer_types", f"has {len(types)} entries for num_layers={self.num_layers}")
            bad = sorted(set(types) - set(LAYER_TYPES))
            if bad:
                fail("layer_types", f"unknown layer type(s) {bad}; known: {LAYER_TYPES}")
            if "sliding_attention" in types and self.sliding_window is None:
                fail("layer_types", "names sliding_attention layers but sliding_window is None")
            object.__setattr__(self, "layer_types", types)
        for name in ("dtype", "param_dtype"):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, jnp.dtype(value).name)
            except TypeError:
                fail(name, f"{value!r} is not a dtype name")
        if self.rope_scaling is not None:
            object.__setattr__(self, "rope_scaling", FrozenDict(_check_rope_scaling(self.rope_scaling)))

    # -- derived values ---------------------------------------------------------------------

    def is_sliding_layer(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) attends through the sliding window."""
        if self.sliding_window is None:
            return False
        if self.layer_types is not None:
            return self.layer_types[layer] == "sliding_attention"
        if self.global_layer_period == 0:
            return True
        return (layer + 1) % self.global_layer_period != 0

    @property
    def attention_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @property
    def embedding_multiplier(self) -> float:
        return math.sqrt(self.hidden_size) if self.embed_scale else 1.0

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def _check_rope_scaling(scaling: Mapping[str, Any]) -> dict:
    """Validates a HF-style rope_scaling dict; accepts the old key 'type' for 'rope_type'."""
    scaling = dict(scaling)
    if "rope_type" not in scaling and "type" in scaling:
        scaling["rope_type"] = scaling.pop("type")
    kind = scaling.get("rope_type", "default")
    if kind not in ROPE_TYPES:
        raise ValueError(
            f"ModelConfig.rope_scaling: rope_type {kind!r} is not supported (supported: {ROPE_TYPES}; "
            "'dynamic' NTK scaling changes frequencies with the sequence length and so cannot share a "
            "KV cache)"
        )
    required = {
        "default": (),
        "linear": ("factor",),
        "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
        "yarn": ("factor", "original_max_position_embeddings"),
    }[kind]
    missing = [key for key in required if scaling.get(key) is None]
    if missing:
        raise ValueError(f"ModelConfig.rope_scaling: rope_type {kind!r} needs {missing}")
    # Lists (e.g. from JSON) would make the config unhashable.
    return {key: tuple(v) if isinstance(v, list) else v for key, v in scaling.items()}
