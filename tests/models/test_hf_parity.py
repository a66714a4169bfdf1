"""Parity with Hugging Face transformers (PyTorch, CPU) for Llama, Qwen2 and Gemma 2.

Each family: a tiny random transformers model is saved with ``save_pretrained``, imported with
next_jax onto a sharded 8-device mesh (per-layer and scanned), and must give the same float32 logits (1e-4) and the same
greedy continuations as ``generate``; exporting it back must load in transformers with the same
logits. transformers and torch are test-only dependencies.
"""

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from next_jax import decoding, partitioning  # noqa: E402
from next_jax.models import hf_checkpoint  # noqa: E402
from next_jax.models.transformer import Transformer  # noqa: E402

VOCAB = 96
COMMON = dict(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, head_dim=8, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
    pad_token_id=0,
)


def _hf_config(family):
    if family == "llama":
        # Llama 3.1 style: GQA, untied head, llama3 rope scaling active within the test's positions.
        return transformers.LlamaConfig(
            **COMMON, rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 16},
        )
    if family == "qwen2":
        # Qwen2.5-Coder small style: QKV biases, tied embeddings.
        return transformers.Qwen2Config(**COMMON, rope_theta=1e6, tie_word_embeddings=True)
    if family == "gemma2":
        # Sliding window small enough to bite within 12 tokens; query scalar != head_dim.
        return transformers.Gemma2Config(
            **COMMON, sliding_window=4, query_pre_attn_scalar=12, attn_logit_softcapping=5.0,
            final_logit_softcapping=3.0,
        )
    raise ValueError(family)


@functools.lru_cache(maxsize=None)
def _hf_model(family):
    torch.manual_seed({"llama": 0, "qwen2": 1, "gemma2": 2}[family])
    model = transformers.AutoModelForCausalLM.from_config(_hf_config(family), attn_implementation="eager").eval()
    with torch.no_grad():
        for p in model.parameters():  # norms start at 1 (Gemma: 0) and biases at 0: randomise all
            p.normal_(0.0, 0.3)
    return model


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.float().numpy()


def _tokens(batch=2, length=12, seed=0):
    return np.random.default_rng(seed).integers(3, VOCAB, size=(batch, length))


def _mesh_partitioner():
    return partitioning.Partitioner(partitioning.make_mesh({"data": 2, "fsdp": 2, "model": 2}))


def _next_jax_logits(config, params, tokens, partitioner):
    apply = partitioner.jit(Transformer(config).apply)
    return np.asarray(apply({"params": params}, np.asarray(tokens, np.int32)))


FAMILIES = ["llama", "qwen2", "gemma2"]


@pytest.mark.parametrize("scan", [False, True], ids=["layers", "scanned"])
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(tmp_path, family, scan):
    model = _hf_model(family)
    model.save_pretrained(tmp_path)
    tokens = _tokens()
    part = _mesh_partitioner()
    config, params = hf_checkpoint.load_hf_checkpoint(str(tmp_path), partitioner=part, scan_layers=scan)
    assert params["token_embed"]["embedding"].sharding.spec == part.mesh_spec(("vocab", "embed"))
    if scan:  # each device read its block of every layer straight into the stacked array
        q = params["layers"]["attn"]["q_proj"]["kernel"]
        assert q.shape[0] == 3 and q.sharding.spec == part.mesh_spec(("layers", "embed", "heads", "head_dim"))
    np.testing.assert_allclose(_next_jax_logits(config, params, tokens, part), _hf_logits(model, tokens), atol=1e-4, rtol=0)


@pytest.mark.parametrize("scan", [False, True], ids=["layers", "scanned"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.heavy
def test_greedy_decoding_matches_transformers_generate(tmp_path, family, scan):
    model = _hf_model(family)
    model.save_pretrained(tmp_path)
    part = _mesh_partitioner()
    config, params = hf_checkpoint.load_hf_checkpoint(str(tmp_path), partitioner=part, scan_layers=scan)
    new_tokens = 10
    prompt_lengths = [5, 9, 3, 7]  # different lengths in one batch (right-padded for next_jax)
    prompts = [_tokens(1, n, seed=i)[0] for i, n in enumerate(prompt_lengths)]

    expected = []
    for prompt in prompts:  # one at a time: no padding on the transformers side
        with torch.no_grad():
            out = model.generate(
                torch.tensor(prompt[None]), do_sample=False, max_new_tokens=new_tokens, eos_token_id=2, pad_token_id=0
            )
        expected.append(out[0, len(prompt):].numpy())

    width = max(prompt_lengths)
    padded = np.zeros((len(prompts), width), np.int32)
    for i, prompt in enumerate(prompts):
        padded[i, : len(prompt)] = prompt
    seeds = decoding.seed_key_data(np.arange(len(prompts) * 2).reshape(len(prompts), 2))
    generate = part.jit(functools.partial(decoding.generate, Transformer(config), max_new_tokens=new_tokens))
    out = generate(params, padded, np.asarray(prompt_lengths, np.int32), seeds, decoding.SamplingParams.make(temperature=0.0, stop_ids=[2]))
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    for i in range(len(prompts)):
        for n in range(2):  # greedy: both samples of a prompt are the same continuation
            assert lengths[i, n] == len(expected[i])  # transformers stops after the EOS, as we do
            np.testing.assert_array_equal(tokens[i, n, : lengths[i, n]], expected[i])
            assert (tokens[i, n, lengths[i, n]:] == 0).all()


@pytest.mark.parametrize("scan", [False, True], ids=["layers", "scanned"])
@pytest.mark.parametrize("family", FAMILIES)
def test_export_loads_in_transformers_with_same_logits(tmp_path, family, scan):
    model = _hf_model(family)
    model.save_pretrained(tmp_path / "hf")
    config, params = hf_checkpoint.load_hf_checkpoint(str(tmp_path / "hf"), partitioner=_mesh_partitioner(),
                                                      scan_layers=scan)
    base = hf_checkpoint.read_hf_config(str(tmp_path / "hf"))
    files = hf_checkpoint.save_hf_checkpoint(str(tmp_path / "out"), params, config, base_config=base, max_shard_bytes=20_000)
    assert len(files) > 2  # several shards + config.json, read through the index
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"), attn_implementation="eager").eval()
    assert type(reloaded) is type(model)
    assert reloaded.config.eos_token_id == 2  # kept from the imported config.json
    tokens = _tokens(seed=3)
    np.testing.assert_allclose(_hf_logits(reloaded, tokens), _hf_logits(model, tokens), atol=1e-5, rtol=0)


def test_bfloat16_checkpoint_imports_exactly(tmp_path):
    """Real checkpoints are bfloat16: importing into float32 must reproduce the upcast weights."""
    model = _hf_model("qwen2")
    bf16 = transformers.AutoModelForCausalLM.from_config(model.config, attn_implementation="eager").eval()
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    bf16.save_pretrained(tmp_path, max_shard_size="20KB")  # also exercises a sharded input checkpoint
    config, params = hf_checkpoint.load_hf_checkpoint(str(tmp_path), partitioner=_mesh_partitioner())
    assert config.param_dtype == "float32"
    reference = bf16.float()
    tokens = _tokens(seed=4)
    np.testing.assert_allclose(
        _next_jax_logits(config, params, tokens, _mesh_partitioner()), _hf_logits(reference, tokens), atol=1e-4, rtol=0
    )
