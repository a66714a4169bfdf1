"""Import from, and export to, Hugging Face checkpoint directories (Llama, Qwen2, Gemma, Gemma 2).

Import reads ``config.json`` into a :class:`ModelConfig` and streams each tensor of the
``*.safetensors`` files straight into its target sharding: for every parameter,
``jax.make_array_from_callback`` asks for each local device's block and the callback reads only
that block's bytes from the memory-mapped file (transposed and reshaped into next_jax's layout on
the way). No host ever holds more than one tensor's local blocks, so a 7B model loads onto a pod
whose hosts could not hold it whole.

Export goes the other way, one tensor at a time, into safetensors files (sharded with an index
when large) plus a ``config.json`` that ``transformers`` loads, so a model trained with next_jax
can be served by the usual tools.

Layout differences handled here (the parameter names and axes fixed at the top of transformer.py): HF Linear weights are [out, in];
stacked (scanned) layers are read from and written as the per-layer tensors;
q/k/v/o are stored with heads flattened; Gemma's norms store ``w`` and compute ``1 + w``, while
next_jax multiplies by ``scale`` (import adds 1, export subtracts it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, Optional

import jax
import numpy as np
from absl import logging

from next_jax import io as nj_io
from next_jax import partitioning
from next_jax.errors import UserValueError
from next_jax.models import import_checks, safetensors_io, stacking, transformer
from next_jax.models.config import RUNTIME_FIELDS, ModelConfig

MODEL_TYPES = ("llama", "qwen2", "gemma", "gemma2")
_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
}
_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
}
_TIED_BY_DEFAULT = {"llama": False, "qwen2": False, "gemma": True, "gemma2": True}


class CheckpointError(UserValueError):
    """A checkpoint that does not fit next_jax: names the file and the field or tensor."""


# ---------------------------------------------------------------------------------------------
# config.json <-> ModelConfig.


def read_hf_config(directory: str) -> dict:
    path = nj_io.join(directory, "config.json")
    if not nj_io.exists(path):
        raise FileNotFoundError(f"{path}: no config.json in the checkpoint directory")
    try:
        config = json.loads(nj_io.read_text(path))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


def _rope(hf: Mapping[str, Any]) -> tuple:
    """(rope_theta, rope_scaling or None) from either the transformers 5 or the older keys."""
    params = dict(hf.get("rope_parameters") or {})
    theta = params.pop("rope_theta", None) or hf.get("rope_theta") or 10_000.0
    scaling = params if params else dict(hf.get("rope_scaling") or {})
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    scaling.pop("rope_theta", None)
    if scaling.get("rope_type", "default") == "default":
        return float(theta), None
    return float(theta), scaling


def model_type_of(hf: Mapping[str, Any], where: str = "config.json") -> str:
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"{where}: field 'model_type': {model_type!r} is not supported (supported: {list(MODEL_TYPES)})"
        )
    return model_type


def config_from_hf(hf: Mapping[str, Any], *, where: str = "config.json", **overrides) -> ModelConfig:
    """Maps a Hugging Face ``config.json`` dict onto ModelConfig; ``overrides`` win (e.g. dtypes)."""
    model_type = model_type_of(hf, where)

    def need(key):
        if hf.get(key) is None:
            raise CheckpointError(f"{where}: field {key!r} is missing")
        return hf[key]

    gemma = model_type in ("gemma", "gemma2")
    heads = int(need("num_attention_heads"))
    hidden = int(need("hidden_size"))
    act_key = "hidden_activation" if hf.get("hidden_activation") else "hidden_act"
    act = hf.get(act_key) or ("gelu_pytorch_tanh" if gemma else "silu")
    if gemma and act == "gelu":  # legacy Gemma releases: meant (and run by transformers as) tanh GELU
        act = "gelu_pytorch_tanh"
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"{where}: field {act_key!r}: activation {act!r} is not supported")
    if hf.get("mlp_bias"):
        raise CheckpointError(f"{where}: field 'mlp_bias': MLP biases are not supported")
    if model_type != "qwen2" and hf.get("attention_bias"):
        raise CheckpointError(f"{where}: field 'attention_bias': biases on q/k/v/o are not supported")
    theta, scaling = _rope(hf)

    layers = int(need("num_hidden_layers"))
    layer_types = hf.get("layer_types")
    window = hf.get("sliding_window")
    if model_type == "qwen2" and not hf.get("use_sliding_window"):
        window, layer_types = None, None
    elif model_type == "qwen2" and layer_types is None:
        first = int(hf.get("max_window_layers", layers))
        layer_types = ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
    elif model_type == "gemma2" and layer_types is None:
        layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    elif model_type in ("llama", "gemma"):
        window, layer_types = None, None
    if layer_types is not None and "sliding_attention" not in layer_types:
        window, layer_types = None, None

    fields = dict(
        vocab_size=int(need("vocab_size")),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(hf.get("head_dim") or hidden // heads),
        mlp_dim=int(need("intermediate_size")),
        mlp_activation=_ACTIVATIONS[act],
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        tie_embeddings=bool(hf.get("tie_word_embeddings", _TIED_BY_DEFAULT[model_type])),
        qkv_bias=model_type == "qwen2",
        embed_scale=gemma,
        attn_logit_softcap=hf.get("attn_logit_softcapping") if model_type == "gemma2" else None,
        final_logit_softcap=hf.get("final_logit_softcapping") if model_type == "gemma2" else None,
        query_pre_attn_scalar=hf.get("query_pre_attn_scalar") if model_type == "gemma2" else None,
        sliding_window=int(window) if window is not None else None,
        layer_types=tuple(layer_types) if layer_types is not None else None,
        use_post_norms=model_type == "gemma2",
        max_seq_len=int(hf.get("max_position_embeddings") or 8192),
    )
    fields.update(overrides)
    try:
        return ModelConfig(**fields)
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from None


def infer_model_type(config: ModelConfig) -> str:
    """The HF family whose layout matches a ModelConfig (for export when none is given)."""
    if config.use_post_norms or config.attn_logit_softcap or config.final_logit_softcap:
        return "gemma2"
    if config.embed_scale:
        return "gemma"
    if config.qkv_bias:
        return "qwen2"
    return "llama"


def hf_config_from(config: ModelConfig, model_type: str, base: Optional[Mapping[str, Any]] = None) -> dict:
    """A ``config.json`` dict for ``config``; ``base`` (e.g. the imported one) keeps token ids etc."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not one of {MODEL_TYPES}")
    gemma = model_type in ("gemma", "gemma2")
    if gemma != config.embed_scale or (model_type == "qwen2") != config.qkv_bias or (
        (model_type == "gemma2") != config.use_post_norms
    ):
        raise ValueError(f"a {model_type} checkpoint cannot express this ModelConfig: {config}")
    if config.mlp_activation != ("gelu_tanh" if gemma else "silu"):
        raise ValueError(f"{model_type} checkpoints use {'gelu_tanh' if gemma else 'silu'} MLPs")
    out = dict(base or {})
    for stale in ("rope_parameters", "rope_scaling", "rope_theta", "layer_types", "torch_dtype"):
        out.pop(stale, None)
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling:
        rope.update(dict(config.rope_scaling))
    out.update(
        architectures=[_ARCHITECTURES[model_type]],
        model_type=model_type,
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.mlp_dim,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.head_dim,
        rms_norm_eps=config.norm_eps,
        max_position_embeddings=config.max_seq_len,
        tie_word_embeddings=config.tie_embeddings,
        rope_parameters=rope,
        dtype=config.param_dtype,
    )
    act = "gelu_pytorch_tanh" if gemma else "silu"
    out["hidden_activation" if model_type == "gemma2" else "hidden_act"] = act
    if model_type in ("llama", "gemma", "gemma2"):
        out.update(attention_bias=False)
    if model_type == "llama":
        out.update(mlp_bias=False)
    layer_types = [
        "sliding_attention" if config.is_sliding_layer(i) else "full_attention" for i in range(config.num_layers)
    ]
    if model_type == "gemma2":
        out.update(
            attn_logit_softcapping=config.attn_logit_softcap,
            final_logit_softcapping=config.final_logit_softcap,
            query_pre_attn_scalar=config.query_pre_attn_scalar or config.head_dim,
            sliding_window=config.sliding_window,
            layer_types=layer_types,
        )
    elif model_type == "qwen2":
        sliding = config.sliding_window is not None and any(t == "sliding_attention" for t in layer_types)
        out.update(use_sliding_window=sliding, sliding_window=config.sliding_window, layer_types=layer_types)
        if sliding:
            out["max_window_layers"] = layer_types.index("sliding_attention")
    elif config.sliding_window is not None:
        raise ValueError(f"{model_type} checkpoints have no sliding-window attention")
    return out


# ---------------------------------------------------------------------------------------------
# Tensor names and layouts.


@dataclasses.dataclass(frozen=True)
class TensorMapping:
    """How one next_jax parameter is stored in an HF checkpoint.

    ``layout``: 'copy' (same shape), 'transpose' (HF [out, in] -> [in, out]), 'in_proj'
    (HF [n*d, hidden] -> [hidden, n, d]), 'out_proj' (HF [hidden, n*d] -> [n, d, hidden]),
    'bias' (HF [n*d] -> [n, d]). ``offset`` is added on import (Gemma norms: 1).
    """

    hf_name: str
    layout: str
    offset: float = 0.0

    def hf_shape(self, shape: tuple) -> tuple:
        if self.layout == "copy":
            return tuple(shape)
        if self.layout == "transpose":
            return tuple(reversed(shape))
        if self.layout == "in_proj":
            return (shape[1] * shape[2], shape[0])
        if self.layout == "out_proj":
            return (shape[2], shape[0] * shape[1])
        if self.layout == "bias":
            return (shape[0] * shape[1],)
        raise ValueError(f"unknown layout {self.layout!r}")

    def read_block(self, view: np.ndarray, shape: tuple, index: tuple) -> np.ndarray:
        """The block ``index`` (slices into next_jax's layout) of the parameter, from the HF view."""
        bounds = [s.indices(n)[:2] for s, n in zip(tuple(index) + (slice(None),) * len(shape), shape)]
        if self.layout == "copy":
            block = view[tuple(slice(a, b) for a, b in bounds)]
        elif self.layout == "transpose":
            (i0, i1), (o0, o1) = bounds
            block = view[o0:o1, i0:i1].T
        elif self.layout == "in_proj":
            (h0, h1), (n0, n1), (d0, d1) = bounds
            d = shape[2]
            block = view[n0 * d : n1 * d, h0:h1].T.reshape(h1 - h0, n1 - n0, d)[:, :, d0:d1]
        elif self.layout == "out_proj":
            (n0, n1), (d0, d1), (h0, h1) = bounds
            d = shape[1]
            block = view[h0:h1, n0 * d : n1 * d].T.reshape(n1 - n0, d, h1 - h0)[:, d0:d1, :]
        elif self.layout == "bias":
            (n0, n1), (d0, d1) = bounds
            d = shape[1]
            block = view[n0 * d : n1 * d].reshape(n1 - n0, d)[:, d0:d1]
        else:
            raise ValueError(f"unknown layout {self.layout!r}")
        block = np.asarray(block, dtype=np.float32)
        return block + np.float32(self.offset) if self.offset else block

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        """The whole parameter in HF's layout (export)."""
        array = np.asarray(array)
        if self.offset:
            array = (array.astype(np.float32) - np.float32(self.offset)).astype(array.dtype)
        if self.layout == "copy":
            return array
        if self.layout == "transpose":
            return array.T
        if self.layout == "in_proj":
            return array.reshape(array.shape[0], -1).T
        if self.layout == "out_proj":
            return array.reshape(-1, array.shape[-1]).T
        if self.layout == "bias":
            return array.reshape(-1)
        raise ValueError(f"unknown layout {self.layout!r}")


def tensor_plan(config: ModelConfig, model_type: str) -> dict:
    """{'layers_0/attn/q_proj/kernel': TensorMapping(...), ...} for the ``params`` collection."""
    norm = 1.0 if model_type in ("gemma", "gemma2") else 0.0
    plan = {"token_embed/embedding": TensorMapping("model.embed_tokens.weight", "copy")}
    for i in range(config.num_layers):
        ours, hf = f"layers_{i}", f"model.layers.{i}"
        plan[f"{ours}/pre_attn_norm/scale"] = TensorMapping(f"{hf}.input_layernorm.weight", "copy", norm)
        for name in ("q_proj", "k_proj", "v_proj"):
            plan[f"{ours}/attn/{name}/kernel"] = TensorMapping(f"{hf}.self_attn.{name}.weight", "in_proj")
            if config.qkv_bias:
                plan[f"{ours}/attn/{name}/bias"] = TensorMapping(f"{hf}.self_attn.{name}.bias", "bias")
        plan[f"{ours}/attn/o_proj/kernel"] = TensorMapping(f"{hf}.self_attn.o_proj.weight", "out_proj")
        if config.use_post_norms:
            plan[f"{ours}/post_attn_norm/scale"] = TensorMapping(f"{hf}.post_attention_layernorm.weight", "copy", norm)
            plan[f"{ours}/pre_mlp_norm/scale"] = TensorMapping(f"{hf}.pre_feedforward_layernorm.weight", "copy", norm)
            plan[f"{ours}/post_mlp_norm/scale"] = TensorMapping(f"{hf}.post_feedforward_layernorm.weight", "copy", norm)
        else:
            plan[f"{ours}/pre_mlp_norm/scale"] = TensorMapping(f"{hf}.post_attention_layernorm.weight", "copy", norm)
        for name in ("gate_proj", "up_proj", "down_proj"):
            plan[f"{ours}/mlp/{name}/kernel"] = TensorMapping(f"{hf}.mlp.{name}.weight", "transpose")
    plan["final_norm/scale"] = TensorMapping("model.norm.weight", "copy", norm)
    if not config.tie_embeddings:
        plan["lm_head/kernel"] = TensorMapping("lm_head.weight", "transpose")
    return plan


# ---------------------------------------------------------------------------------------------
# Import.


def stream_params(directory: str, abstract_params, config: ModelConfig, model_type: str, accept=None):
    """Fills ``abstract_params`` (ShapeDtypeStructs with shardings, the ``params`` collection) from
    the checkpoint, each device reading only its own block.

    Either layout works: a stacked parameter (scanned layers, ``layers/...`` with a leading layer
    axis) is filled from the per-layer tensors, each block from the layers it covers.

    Every tensor read is checked (``import_checks``: floating-point dtype, finite values, no
    classification head) unless ``accept`` names the kind of mismatch.
    """
    accept = import_checks.accepted(accept)
    reader = safetensors_io.CheckpointReader(directory)
    import_checks.check_head_tensors(reader.keys(), directory, accept)
    plan = tensor_plan(config, model_type)
    used = set()

    def source(name: str, shape: tuple):
        """(HF tensor name, mapping, lazy view) for one next_jax per-layer parameter, checked."""
        mapping = plan.get(name)
        if mapping is None:
            raise CheckpointError(f"{directory}: next_jax parameter {name!r} has no Hugging Face tensor")
        if mapping.hf_name not in reader:
            raise CheckpointError(f"{directory}: tensor {mapping.hf_name!r} (for {name}) is missing")
        expected = mapping.hf_shape(shape)
        found = reader.shape(mapping.hf_name)
        if tuple(found) != expected:
            raise CheckpointError(
                f"{reader.file_of(mapping.hf_name)}: tensor {mapping.hf_name!r} has shape {tuple(found)}, "
                f"but config.json implies {expected} (for {name} {shape})"
            )
        import_checks.check_dtype(mapping.hf_name, reader.dtype(mapping.hf_name), reader.file_of(mapping.hf_name),
                                  accept)
        used.add(mapping.hf_name)
        return mapping, reader.lazy(mapping.hf_name)  # reads only the blocks sliced below

    def checked(mapping, block):
        import_checks.check_finite(block, mapping.hf_name, reader.file_of(mapping.hf_name), accept)
        return block

    def load(path, target):
        name = partitioning.path_name(path)
        shape = tuple(target.shape)
        head, _, rest = name.partition("/")
        if head == stacking.STACKED:
            layers = [source(f"{stacking.layer_name(i)}/{rest}", shape[1:]) for i in range(shape[0])]

            def read(index):
                index = tuple(index) + (slice(None),) * (len(shape) - len(index))
                first, last = index[0].indices(shape[0])[:2]
                return np.stack([checked(m, m.read_block(view, shape[1:], index[1:])) for m, view in layers[first:last]])
        else:
            mapping, view = source(name, shape)

            def read(index):
                return checked(mapping, mapping.read_block(view, shape, index))

        blocks = {}

        def block(index):
            key = tuple(s.indices(n)[:2] for s, n in zip(tuple(index) + (slice(None),) * len(shape), shape))
            if key not in blocks:
                blocks[key] = read(index).astype(target.dtype)
            return blocks[key]

        return jax.make_array_from_callback(shape, target.sharding, block, dtype=target.dtype)

    params = jax.tree_util.tree_map_with_path(load, abstract_params)
    unused = sorted(set(reader.keys()) - used)
    if unused:
        logging.warning("%s: %d checkpoint tensors not used: %s", directory, len(unused), unused[:8])
    return params


def load_hf_checkpoint(
    directory: str,
    *,
    partitioner=None,
    config: Optional[ModelConfig] = None,
    abstract_params=None,
    accept=None,
    **config_overrides,
):
    """(ModelConfig, params) from a local HF checkpoint directory, params born sharded.

    ``partitioner`` (default: all devices, data-parallel mesh) gives the target shardings;
    ``config_overrides`` (e.g. ``param_dtype='bfloat16'``, ``max_seq_len=4096``) adjust the
    config read from ``config.json``. ``abstract_params`` overrides the target shapes/shardings
    (default: from the model's own initialiser, so logical axes are defined once, in the model).
    ``accept``: kinds of mismatch to import anyway (see ``import_checks``; None = refuse all).
    """
    hf = read_hf_config(directory)
    where = nj_io.join(directory, "config.json")
    model_type = model_type_of(hf, where)
    import_checks.check_architecture(hf, model_type, _ARCHITECTURES[model_type], where,
                                     import_checks.accepted(accept))
    if config is None:
        config = config_from_hf(hf, where=where, **config_overrides)
    else:
        check_config_matches(config, config_from_hf(hf, where=where), where)
    if abstract_params is None:
        abstract_params = abstract_model_params(config, partitioner)
    return config, stream_params(directory, abstract_params, config, model_type, accept)


# Fields a run may choose freely; every other field must agree with the checkpoint's config.json.
_RUNTIME_FIELDS = RUNTIME_FIELDS


def check_config_matches(config: ModelConfig, from_checkpoint: ModelConfig, where: str) -> None:
    """Raises when ``config`` (e.g. a gin preset) describes another architecture than the checkpoint."""
    skip = _RUNTIME_FIELDS + ("layer_types", "global_layer_period")  # compared as the per-layer pattern
    diffs = [
        f"{f.name}: config {getattr(config, f.name)!r} vs checkpoint {getattr(from_checkpoint, f.name)!r}"
        for f in dataclasses.fields(ModelConfig)
        if f.name not in skip and getattr(config, f.name) != getattr(from_checkpoint, f.name)
    ]
    if config.num_layers == from_checkpoint.num_layers:
        ours = [config.is_sliding_layer(i) for i in range(config.num_layers)]
        theirs = [from_checkpoint.is_sliding_layer(i) for i in range(config.num_layers)]
        if ours != theirs:
            diffs.append(f"sliding-window layers: config {ours} vs checkpoint {theirs}")
    if diffs:
        raise CheckpointError(f"{where}: the model config does not match the checkpoint: " + "; ".join(diffs))


def abstract_model_params(config: ModelConfig, partitioner=None):
    """ShapeDtypeStructs (with shardings) of the model's ``params`` collection; no FLOPs."""
    partitioner = partitioner or partitioning.Partitioner(partitioning.make_mesh())
    return transformer.abstract_params(config, partitioner)[0]


# ---------------------------------------------------------------------------------------------
# Export.


def _host_array(x) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def save_hf_checkpoint(
    directory: str,
    params,
    config: ModelConfig,
    *,
    model_type: Optional[str] = None,
    base_config: Optional[Mapping[str, Any]] = None,
    dtype: Optional[str] = None,
    max_shard_bytes: int = 5 * 1024**3,
) -> list:
    """Writes ``params`` (the ``params`` collection) as an HF checkpoint that ``transformers`` loads.

    ``dtype`` (default: the parameters' own) is the stored dtype, e.g. 'bfloat16' for serving.
    One tensor at a time is gathered to the host; only process 0 writes. Returns the files written.
    """
    model_type = model_type or infer_model_type(config)
    hf = hf_config_from(config, model_type, base_config)
    plan = tensor_plan(config, model_type)
    flat = stacking.per_layer_items(params)  # name -> thunk; a stacked layer's slice is taken when written
    missing, extra = sorted(set(plan) - set(flat)), sorted(set(flat) - set(plan))
    if missing or extra:
        raise CheckpointError(f"params do not match the {model_type} layout: missing {missing}, unexpected {extra}")
    by_hf = {m.hf_name: (name, m) for name, m in plan.items()}
    specs = []
    for name, mapping in plan.items():
        leaf = jax.eval_shape(flat[name])
        out_dtype = np.dtype(dtype or leaf.dtype)
        specs.append((mapping.hf_name, mapping.hf_shape(tuple(leaf.shape)), out_dtype))
    if dtype:
        hf["dtype"] = np.dtype(dtype).name

    def produce(hf_name):
        name, mapping = by_hf[hf_name]
        return mapping.to_hf(_host_array(flat[name]()))

    if jax.process_index() != 0:
        for name, _ in by_hf.values():  # every process must take part in the gathers
            _host_array(flat[name]())
        return []
    files = safetensors_io.write_checkpoint(directory, specs, produce, max_shard_bytes=max_shard_bytes)
    nj_io.write_text(nj_io.join(directory, "config.json"), json.dumps(hf, indent=2, sort_keys=True))
    total = sum(math.prod(s[1]) * s[2].itemsize for s in specs)
    logging.info("Exported %d tensors (%.1f MB) to %s", len(specs), total / 1e6, directory)
    return files + ["config.json"]
