"""The Hugging Face checkpoint importer/exporter without transformers: format, configs, streaming.

(Parity against transformers itself is in test_hf_parity.py.)
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from next_jax import partitioning
from next_jax.models import hf_checkpoint, safetensors_io
from next_jax.models.config import ModelConfig
from next_jax.models.hf_checkpoint import CheckpointError, config_from_hf, hf_config_from
from next_jax.models.transformer import Transformer

# --------------------------------------------------------------------------------------------
# safetensors format.


def test_safetensors_roundtrip_with_bfloat16_and_lazy_slices(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.normal(size=(6, 10)).astype(ml_dtypes.bfloat16),
        "b": rng.normal(size=(3,)).astype(np.float32),
        "c": np.arange(24, dtype=np.int64).reshape(2, 3, 4),
    }
    specs = [(k, v.shape, v.dtype) for k, v in tensors.items()]
    safetensors_io.write_file(str(tmp_path / "model.safetensors"), specs, tensors.__getitem__, {"format": "pt"})
    reader = safetensors_io.CheckpointReader(str(tmp_path))
    assert reader.metadata("a") == {"format": "pt"} and sorted(reader.keys()) == ["a", "b", "c"]
    for name, value in tensors.items():
        assert reader.dtype(name) == value.dtype and reader.shape(name) == value.shape
        np.testing.assert_array_equal(reader[name], value)
    block = reader.lazy("a")[2:4, 5:9]
    assert block.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(block, tensors["a"][2:4, 5:9])
    assert list(tmp_path.iterdir()) == [tmp_path / "model.safetensors"]  # no temporary file left


def test_safetensors_files_are_readable_by_the_safetensors_package(tmp_path):
    from safetensors.numpy import load_file

    tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "i": np.array([1, 2], np.int32)}
    safetensors_io.write_file(
        str(tmp_path / "m.safetensors"), [(k, v.shape, v.dtype) for k, v in tensors.items()], tensors.__getitem__
    )
    loaded = load_file(str(tmp_path / "m.safetensors"))
    for name in tensors:
        np.testing.assert_array_equal(loaded[name], tensors[name])


def test_sharded_checkpoint_writes_an_index_and_reads_back(tmp_path):
    tensors = {f"t{i}": np.full((10, 10), i, np.float32) for i in range(5)}
    specs = [(k, v.shape, v.dtype) for k, v in tensors.items()]
    files = safetensors_io.write_checkpoint(str(tmp_path), specs, tensors.__getitem__, max_shard_bytes=900)
    assert len(files) == 3  # 400 bytes each, two per file
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 5 * 400
    assert index["weight_map"]["t4"] == "model-00003-of-00003.safetensors"
    reader = safetensors_io.CheckpointReader(str(tmp_path))
    assert sorted(reader.keys()) == sorted(tensors)
    assert reader.file_of("t4").endswith("model-00003-of-00003.safetensors")
    np.testing.assert_array_equal(reader["t3"], tensors["t3"])
    np.testing.assert_array_equal(reader.lazy("t0")[3:5, 1:2], tensors["t0"][3:5, 1:2])


def test_index_pointing_at_a_missing_shard_names_the_index(tmp_path):
    tensors = {f"t{i}": np.full((10, 10), i, np.float32) for i in range(3)}
    specs = [(k, v.shape, v.dtype) for k, v in tensors.items()]
    safetensors_io.write_checkpoint(str(tmp_path), specs, tensors.__getitem__, max_shard_bytes=500)
    (tmp_path / "model-00003-of-00003.safetensors").unlink()
    with pytest.raises(safetensors_io.SafetensorsError,
                       match=r"model.safetensors.index.json: maps 1 tensors to model-00003-of-00003.safetensors, "
                             r"which does not exist"):
        safetensors_io.CheckpointReader(str(tmp_path))


def test_corrupt_safetensors_names_the_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 12)
    with pytest.raises(safetensors_io.SafetensorsError, match=r"bad.safetensors: not a readable safetensors file"):
        safetensors_io.CheckpointReader(str(tmp_path))
    path.write_bytes(b"\x01")
    with pytest.raises(safetensors_io.SafetensorsError, match="bad.safetensors: .*header too small"):
        safetensors_io.CheckpointReader(str(tmp_path))


# --------------------------------------------------------------------------------------------
# config.json mapping.

LLAMA = {
    "model_type": "llama", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "max_position_embeddings": 256,
    "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64},
}


def test_llama_config_with_legacy_rope_keys():
    config = config_from_hf(LLAMA)
    assert (config.num_heads, config.num_kv_heads, config.head_dim, config.mlp_dim) == (4, 2, 16, 96)
    assert config.rope_theta == 500000.0 and config.rope_scaling["rope_type"] == "llama3"
    assert not config.qkv_bias and not config.embed_scale and config.sliding_window is None
    assert config.norm_eps == 1e-5 and config.max_seq_len == 256


def test_transformers5_rope_parameters_and_qwen2_sliding_layers():
    hf = dict(LLAMA, model_type="qwen2", use_sliding_window=True, sliding_window=16, max_window_layers=1,
              rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    del hf["rope_scaling"], hf["rope_theta"]
    config = config_from_hf(hf)
    assert config.rope_theta == 1e6 and config.rope_scaling is None and config.qkv_bias
    assert [config.is_sliding_layer(i) for i in range(2)] == [False, True]
    assert config_from_hf(dict(hf, use_sliding_window=False)).sliding_window is None


def test_gemma2_defaults_alternate_sliding_layers():
    hf = dict(LLAMA, model_type="gemma2", head_dim=32, hidden_activation="gelu_pytorch_tanh",
              sliding_window=8, query_pre_attn_scalar=24, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
    del hf["tie_word_embeddings"], hf["hidden_act"], hf["rope_scaling"]
    config = config_from_hf(hf)
    assert config.tie_embeddings and config.embed_scale and config.use_post_norms
    assert config.mlp_activation == "gelu_tanh" and config.head_dim == 32
    assert (config.attn_logit_softcap, config.final_logit_softcap, config.query_pre_attn_scalar) == (50.0, 30.0, 24)
    assert [config.is_sliding_layer(i) for i in range(2)] == [True, False]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "mamba"}, "field 'model_type': 'mamba' is not supported"),
        ({"hidden_size": None}, "field 'hidden_size' is missing"),
        ({"attention_bias": True}, "field 'attention_bias'"),
        ({"hidden_act": "relu"}, "activation 'relu' is not supported"),
        ({"num_key_value_heads": 3}, "num_kv_heads"),
    ],
)
def test_bad_configs_name_the_field(change, message):
    with pytest.raises(CheckpointError, match=message):
        config_from_hf(dict(LLAMA, **change), where="ckpt/config.json")


def _tiny(model_type):
    common = dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=48)
    return {
        "llama": ModelConfig(**common),
        "qwen2": ModelConfig(**common, qkv_bias=True, tie_embeddings=True, rope_theta=1e6),
        "gemma": ModelConfig(**common, mlp_activation="gelu_tanh", embed_scale=True, tie_embeddings=True),
        "gemma2": ModelConfig(
            **common, mlp_activation="gelu_tanh", embed_scale=True, tie_embeddings=True, use_post_norms=True,
            attn_logit_softcap=50.0, final_logit_softcap=30.0, query_pre_attn_scalar=16, sliding_window=4,
            layer_types=("sliding_attention", "full_attention"),
        ),
    }[model_type]


@pytest.mark.parametrize("model_type", hf_checkpoint.MODEL_TYPES)
def test_config_roundtrips_through_config_json(model_type):
    config = _tiny(model_type)
    assert hf_checkpoint.infer_model_type(config) == model_type
    hf = json.loads(json.dumps(hf_config_from(config, model_type)))
    assert config_from_hf(hf, max_seq_len=config.max_seq_len) == config


# --------------------------------------------------------------------------------------------
# Streaming import into shardings, and export.


def _random_params(config, seed=0):
    part = partitioning.Partitioner(partitioning.make_mesh({"data": 1}, devices=jax.devices()[:1]))
    init = lambda rng: Transformer(config).init(rng, jnp.zeros((1, 1), jnp.int32))  # noqa: E731
    params = part.init(init, jax.random.key(seed))["params"]
    # Norm scales start at 1; perturb everything so layout mistakes cannot hide.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("model_type", ["qwen2", "gemma2"])
@pytest.mark.heavy
def test_export_then_streamed_import_on_a_sharded_mesh(tmp_path, monkeypatch, model_type):
    config = _tiny(model_type)
    params = _random_params(config)
    files = hf_checkpoint.save_hf_checkpoint(str(tmp_path), params, config, max_shard_bytes=4096)
    assert "model.safetensors.index.json" not in files and len(files) > 2  # shards + config.json
    assert os.path.exists(tmp_path / "model.safetensors.index.json")

    blocks = []
    original = hf_checkpoint.TensorMapping.read_block

    def spy(self, view, shape, index):
        block = original(self, view, shape, index)
        blocks.append((self.hf_name, tuple(shape), block.shape))
        return block

    monkeypatch.setattr(hf_checkpoint.TensorMapping, "read_block", spy)
    part = partitioning.Partitioner(partitioning.make_mesh({"data": 2, "fsdp": 2, "model": 2}))
    loaded_config, loaded = hf_checkpoint.load_hf_checkpoint(str(tmp_path), partitioner=part)
    assert loaded_config == config.replace(max_seq_len=loaded_config.max_seq_len)

    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6), loaded, params)
    q = loaded["layers_0"]["attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == part.mesh_spec(("embed", "heads", "head_dim"))
    # Each device's block was read on its own: sharded tensors never come in whole, and each
    # distinct block is read once.
    q_blocks = [b for b in blocks if b[0] == "model.layers.0.self_attn.q_proj.weight"]
    assert q_blocks and all(block == (16, 2, 8) for _, _, block in q_blocks) and len(q_blocks) == 4


@pytest.mark.heavy
def test_import_errors_name_the_tensor(tmp_path):
    config = _tiny("llama")
    hf_checkpoint.save_hf_checkpoint(str(tmp_path), _random_params(config), config)
    hf = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(hf, intermediate_size=40)))
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight' has shape \(32, 48\), but config.json implies \(32, 40\)"):
        hf_checkpoint.load_hf_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(dict(hf, num_hidden_layers=3)))
    with pytest.raises(CheckpointError, match=r"tensor 'model.layers.2.self_attn.k_proj.weight' \(for layers_2/attn/k_proj/kernel\) is missing"):
        hf_checkpoint.load_hf_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text("{\n  \"model_type\": \n}")
    with pytest.raises(CheckpointError, match=r"config.json:3: invalid JSON"):
        hf_checkpoint.load_hf_checkpoint(str(tmp_path))


@pytest.mark.heavy
def test_export_in_bfloat16(tmp_path):
    config = _tiny("llama")
    params = _random_params(config)
    hf_checkpoint.save_hf_checkpoint(str(tmp_path), params, config, dtype="bfloat16")
    reader = safetensors_io.CheckpointReader(str(tmp_path))
    assert reader["model.norm.weight"].dtype == ml_dtypes.bfloat16
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    _, loaded = hf_checkpoint.load_hf_checkpoint(str(tmp_path))
    np.testing.assert_allclose(np.asarray(loaded["final_norm"]["scale"]), np.asarray(params["final_norm"]["scale"]), rtol=1e-2)
