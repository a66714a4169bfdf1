"""The demo's in-process engine: training rows, and sampling draws that belong to their stage."""

import numpy as np
import pytest
import seqio

from next_jax.demo.engine import EOS_ID, Engine, TrainStepConfig
from next_jax.models.config import ModelConfig

SMALL = ModelConfig(vocab_size=384, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=2, head_dim=8,
                    mlp_dim=32, tie_embeddings=True, max_seq_len=64)


def _engine():
    return Engine(SMALL, seqio.ByteVocabulary(), prompt_width=12, answer_width=6, sample_batch=4)


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
