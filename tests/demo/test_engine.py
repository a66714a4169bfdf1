"""The demo's in-process engine: training rows, and sampling draws that belong to their stage."""

import jax
import numpy as np
import pytest
import seqio

from next_jax.demo.engine import EOS_ID, Engine, TrainStepConfig
from next_jax.models.config import ModelConfig

SMALL = ModelConfig(vocab_size=384, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=2, head_dim=8,
                    mlp_dim=32, tie_embeddings=True, max_seq_len=64)


def _engine(prompt_widths=(12,)):
    return Engine(SMALL, seqio.ByteVocabulary(), prompt_widths=prompt_widths, answer_width=6, sample_batch=4)


def test_rows_put_the_loss_on_the_answer_and_a_document_on_every_token():
    engine = _engine()
    prompt, answer = engine.encode_prompt("abc"), engine.encode_answer("xy")
    assert answer[-1] == EOS_ID
    tokens, weights = engine._rows([(prompt, answer)])
    assert tokens[0, :5].tolist() == prompt + answer[:2] and tokens.shape == (1, 18)
    assert weights[0].tolist() == [0, 0, 0, 1, 1, 1] + [0] * 12
    _, weighted = engine._rows([(prompt, answer)], prompt_loss_weight=0.25)
    assert weighted[0, :3].tolist() == [0.25] * 3 and weighted[0, 3:6].tolist() == [1, 1, 1]
    # A document: no prompt, the loss on each of its tokens.
    doc = engine.encode_prompt("hello world")
    _, doc_weights = engine._rows([([], doc)])
    assert doc_weights[0].tolist() == [1] * len(doc) + [0] * (18 - len(doc))
    assert engine.encode_answer("too long!") is None


def test_a_job_takes_the_narrowest_width_that_holds_its_prompts_and_rows():
    engine = _engine((8, 12))
    short, long_ = engine.encode_prompt("abc"), engine.encode_prompt("abcdefghij")
    answer = engine.encode_answer("xy")
    assert engine._rows([(short, answer)])[0].shape == (1, 14)
    assert engine._rows([(short, answer), (long_, answer)])[0].shape == (2, 18)
    # A document longer than the narrow row goes to the wide one.
    assert engine._rows([([], engine.encode_document("a" * 15))])[0].shape == (1, 18)
    assert engine.width_for([short]) == 8 and engine.width_for([long_]) == 12
    with pytest.raises(ValueError, match="does not fit prompt_widths"):
        engine.width_for([short + long_])


@pytest.mark.heavy
def test_a_narrow_width_trains_and_samples_as_the_wide_one():
    """Right padding is invisible to a causal model with the loss masked: the same job at width 8
    or 12 gives the same parameters (to float rounding) and the same greedy answers."""
    narrow, wide = _engine((8, 12)), _engine((12,))
    settings = TrainStepConfig(batch_size=8)  # the 8 test devices split the batch
    examples = [(narrow.encode_prompt(p), narrow.encode_answer(a)) for p, a in (("ab", "x"), ("cde", "yz"))]
    params = narrow.init_params(settings, seed=0)
    got = [e.train(params, examples, steps=5, settings=settings, seed=3)[0] for e in (narrow, wide)]
    for a, b in zip(jax.tree.leaves(got[0]), jax.tree.leaves(got[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    prompts = [p for p, _ in examples]
    draws = [e.sample(g, prompts, num_samples=1, temperature=0.0, task_ids=["a", "b"], run_seed=1)
             for e, g in zip((narrow, wide), got)]
    assert draws[0] == draws[1]


@pytest.mark.heavy
def test_sampling_draws_depend_on_the_stage_seed_and_the_task_not_on_the_batch():
    engine = _engine()
    params = engine.init_params(TrainStepConfig(), seed=0)
    prompts = [engine.encode_prompt(p) for p in ("ab", "cd", "ef")]
    ids = ["t/0", "t/1", "t/2"]
    draw = lambda run_seed, p=prompts, i=ids: engine.sample(params, p, num_samples=3, temperature=1.0,  # noqa: E731
                                                            task_ids=i, run_seed=run_seed)
    first = draw(7)
    assert draw(7) == first
    assert draw(8) != first
    # A task's draws do not depend on which other prompts share its batch.
    assert draw(7, prompts[1:], ids[1:]) == first[1:]
    # The samples of one task differ from one another (each has its own key).
    assert len({tuple(row) for row in first}) > 1 or len(set(first[0])) > 1
    assert all(len(row) == 3 for row in first) and np.all([isinstance(s, str) for row in first for s in row])
