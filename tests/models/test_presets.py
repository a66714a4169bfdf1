"""Every gin model preset parses and has the published architecture's parameter count (shapes only,
nothing allocated)."""

import os

import gin
import pytest
import seqio

from next_jax.models import ModelConfig, count_params
from tests import REPO

PRESET_DIR = os.path.join(REPO, "gin_configs", "models")

# Total parameters of the released checkpoints (safetensors), embeddings included once when tied.
PUBLISHED = {
    "qwen2_5_coder_0_5b.gin": 494_032_768,
    "qwen2_5_coder_1_5b.gin": 1_543_714_304,
    "qwen2_5_coder_7b.gin": 7_615_616_512,
    "llama3_2_1b.gin": 1_235_814_400,
    "llama3_1_8b.gin": 8_030_261_248,
    "gemma2_2b.gin": 2_614_341_888,
    "gemma2_9b.gin": 9_241_705_984,
}


def _parse(name, bindings=()):
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings([os.path.join(PRESET_DIR, name)], list(bindings))
        model = gin.query_parameter("%MODEL").scoped_configurable_fn()
        vocabulary = gin.query_parameter("%VOCABULARY")
        return model, vocabulary
    finally:
        gin.clear_config()


def test_every_preset_file_is_covered():
    assert sorted(f for f in os.listdir(PRESET_DIR) if f.endswith(".gin")) == sorted(list(PUBLISHED) + ["tiny.gin"])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_real_family_presets_have_the_published_size(name):
    config, vocabulary = _parse(name, ["HF_CHECKPOINT_DIR = '/checkpoints/model'"])
    assert isinstance(config, ModelConfig)
    assert count_params(config) == PUBLISHED[name]
    assert "HuggingFaceVocabulary" in vocabulary.selector


def test_family_specific_fields():
    gemma, _ = _parse("gemma2_9b.gin", ["HF_CHECKPOINT_DIR = '/x'"])
    assert [gemma.is_sliding_layer(i) for i in range(4)] == [True, False, True, False]
    assert gemma.attention_scale == pytest.approx(256 ** -0.5)
    assert gemma.use_post_norms and gemma.embed_scale and gemma.tie_embeddings
    llama, _ = _parse("llama3_1_8b.gin", ["HF_CHECKPOINT_DIR = '/x'"])
    assert llama.rope_scaling["rope_type"] == "llama3" and llama.rope_scaling["factor"] == 8.0
    qwen, _ = _parse("qwen2_5_coder_7b.gin", ["HF_CHECKPOINT_DIR = '/x'"])
    assert qwen.qkv_bias and not qwen.tie_embeddings


def test_real_family_presets_require_the_checkpoint_dir():
    gin.clear_config()
    try:
        with pytest.raises(Exception, match="HF_CHECKPOINT_DIR"):
            gin.parse_config_files_and_bindings([os.path.join(PRESET_DIR, "llama3_2_1b.gin")], [])
            gin.query_parameter("%VOCABULARY").scoped_configurable_fn()
    finally:
        gin.clear_config()


def test_tiny_preset_uses_bytes_and_fits_its_vocabulary():
    config, vocabulary = _parse("tiny.gin")
    vocab = vocabulary.scoped_configurable_fn() if hasattr(vocabulary, "scoped_configurable_fn") else vocabulary
    assert isinstance(vocab, seqio.ByteVocabulary)
    assert config.vocab_size >= vocab.vocab_size
    assert count_params(config) < 10_000_000
