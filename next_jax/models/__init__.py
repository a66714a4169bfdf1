"""Decoder-only transformers (Llama 3, Qwen2, Gemma 2 shapes), their KV cache and checkpoint import."""

from next_jax.models.config import ModelConfig
from next_jax.models.kv_cache import DecodeCache, LayerCache
from next_jax.models.ref import ModelRef
from next_jax.models.transformer import (Transformer, abstract_params, count_params, init_params, init_variables,
                                         random_params)
