"""Hugging Face import refuses what is not the model it claims to be, naming the field or tensor;
an explicit option accepts a mismatch knowingly; a directory without weights names the repository."""

import json

import numpy as np
import pytest

from next_jax.errors import UserError
from next_jax.models import hf_checkpoint, hf_repos, import_checks, safetensors_io, weights
from next_jax.models.config import ModelConfig
from tests.models.test_hf_checkpoint import _random_params, _tiny


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A valid llama-family checkpoint directory, and its tensors."""
    directory = tmp_path_factory.mktemp("hf")
    config = _tiny("llama")
    hf_checkpoint.save_hf_checkpoint(str(directory), _random_params(config), config)
    reader = safetensors_io.CheckpointReader(str(directory))
    return directory, {name: np.asarray(reader[name]) for name in reader.keys()}


def _variant(exported, tmp_path, config_changes=None, tensors=None):
    directory, original = exported
    hf = json.loads((directory / "config.json").read_text())
    hf.update(config_changes or {})
    (tmp_path / "config.json").write_text(json.dumps(hf))
    tensors = dict(original, **(tensors or {}))
    safetensors_io.write_file(str(tmp_path / "model.safetensors"), [(k, v.shape, v.dtype) for k, v in tensors.items()],
                              tensors.__getitem__)
    return str(tmp_path)


def test_a_valid_checkpoint_imports(exported):
    hf_checkpoint.load_hf_checkpoint(str(exported[0]))


@pytest.mark.parametrize("architectures, kind, message", [
    (["MistralForCausalLM"], "architecture",
     r"config.json: field 'architectures': 'MistralForCausalLM' is not the 'llama' family .*\(LlamaForCausalLM\)"),
    (["LlamaForSequenceClassification"], "head",
     r"config.json: field 'architectures': 'LlamaForSequenceClassification' is not a causal language model"),
])
def test_architecture_and_head_type_are_refused_naming_the_field(exported, tmp_path, architectures, kind, message):
    directory = _variant(exported, tmp_path, {"architectures": architectures})
    with pytest.raises(import_checks.ImportMismatchError, match=message) as refused:
        hf_checkpoint.load_hf_checkpoint(directory)
    assert f"ACCEPT_IMPORT_MISMATCH = ['{kind}']" in str(refused.value) and isinstance(refused.value, UserError)
    hf_checkpoint.load_hf_checkpoint(directory, accept=(kind,))  # knowingly accepted
    with import_checks.accepting([kind]):  # as the binary applies --gin.ACCEPT_IMPORT_MISMATCH
        hf_checkpoint.load_hf_checkpoint(directory)


def test_a_classification_head_tensor_is_refused(exported, tmp_path):
    directory = _variant(exported, tmp_path, tensors={"score.weight": np.zeros((2, 32), np.float32)})
    with pytest.raises(import_checks.ImportMismatchError, match=r"tensor 'score.weight' is a classification head"):
        hf_checkpoint.load_hf_checkpoint(directory)


def test_an_integer_norm_tensor_is_refused_naming_it(exported, tmp_path):
    name = "model.layers.1.input_layernorm.weight"
    directory = _variant(exported, tmp_path, tensors={name: np.ones((32,), np.int32)})
    with pytest.raises(import_checks.ImportMismatchError,
                       match=rf"model.safetensors: tensor '{name}' has dtype int32; parameters must be floating point"):
        hf_checkpoint.load_hf_checkpoint(directory)
    hf_checkpoint.load_hf_checkpoint(directory, accept="dtype")


def test_a_nan_tensor_is_refused_naming_it(exported, tmp_path):
    name = "model.layers.0.mlp.up_proj.weight"
    bad = exported[1][name].copy()
    bad[3, 5] = np.nan
    bad[0, 0] = np.inf
    directory = _variant(exported, tmp_path, tensors={name: bad})
    with pytest.raises(import_checks.ImportMismatchError, match=rf"tensor '{name}' holds 2 NaN or infinite values"):
        hf_checkpoint.load_hf_checkpoint(directory)
    with pytest.raises(import_checks.UserValueError, match="unknown kinds"):
        hf_checkpoint.load_hf_checkpoint(directory, accept=["nan"])


def test_a_directory_without_weights_names_the_repository_and_layout(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    qwen = ModelConfig(vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
                       head_dim=64, mlp_dim=4864)
    with pytest.raises(hf_repos.MissingCheckpointFilesError) as missing:
        weights.load_params(str(tmp_path), qwen, partitioner=None)
    assert str(missing.value) == (
        f"checkpoint={str(tmp_path)!r} has no *.safetensors: download the Hugging Face repository "
        f"Qwen/Qwen2.5-Coder-0.5B there (e.g. huggingface-cli download Qwen/Qwen2.5-Coder-0.5B --local-dir "
        f"{tmp_path}); the directory must hold config.json, the weights as *.safetensors (one model.safetensors, "
        "or shards with model.safetensors.index.json) and tokenizer.json")
