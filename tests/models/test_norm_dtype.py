"""Norm scales stay float32 with bfloat16 parameters: a bfloat16 Gemma 2 import keeps transformers'
logits (Gemma's folded 1 + w rounded to bfloat16 drifted by about 0.05)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.models.test_hf_parity import _hf_logits, _hf_model, _mesh_partitioner, _next_jax_logits, _tokens  # noqa: E402

from next_jax.models import hf_checkpoint  # noqa: E402


def test_gemma2_bfloat16_params_keep_float32_norms_and_match_transformers(tmp_path):
    model = _hf_model("gemma2")
    bf16 = transformers.AutoModelForCausalLM.from_config(model.config, attn_implementation="eager").eval()
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    bf16.save_pretrained(tmp_path)
    part = _mesh_partitioner()
    config, params = hf_checkpoint.load_hf_checkpoint(str(tmp_path), partitioner=part, param_dtype="bfloat16")
    assert config.param_dtype == "bfloat16" and config.dtype == "float32"
    assert params["layers_0"]["attn"]["q_proj"]["kernel"].dtype == np.dtype("bfloat16")
    assert params["layers_0"]["pre_attn_norm"]["scale"].dtype == np.dtype("float32")
    tokens = _tokens(seed=5)
    # The same bfloat16 weights computed in float32 (loaded afresh, so buffers such as the rotary
    # frequencies are float32 as in next_jax).
    upcast = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32,
                                                                attn_implementation="eager").eval()
    reference = _hf_logits(upcast, tokens)
    np.testing.assert_allclose(_next_jax_logits(config, params, tokens, part), reference, atol=2e-4, rtol=0)
