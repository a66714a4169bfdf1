"""Small fixtures for the self-training tests: hand-traced repair tasks, a tiny byte-level model,
and an "oracle" answer format that turns some of a random model's answers into the reference fix,
so the loop has accepted pairs to train on without a trained model (which answers pass depends
only on the sampled text, so runs with the same seeds accept the same pairs)."""

from __future__ import annotations

import zlib

from next_jax.data.records import Trace, TracedTask, write_records
from next_jax.evaluation import formats
from next_jax.models.config import ModelConfig

TINY = dict(vocab_size=264, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16, mlp_dim=64,
            max_seq_len=512)
OPS = [("+", "-"), ("-", "+"), ("*", "+")]


def tiny_config() -> ModelConfig:
    return ModelConfig(**TINY)


def vocabulary():
    import seqio

    return seqio.ByteVocabulary()


def make_task(i: int, split: str) -> TracedTask:
    good, bad = OPS[i % len(OPS)]
    a, b = i % 5 + 1, i % 3 + 2
    want = eval(f"{a} {good} {b}")
    got = eval(f"{a} {bad} {b}")
    buggy = f"def f(a, b):\n    return a {bad} b\n"
    test = f"assert f({a}, {b}) == {want}"
    traced = (f"def f(a, b):  # (0) a={a}; b={b};\n    return a {bad} b  # (1) __return__={got}\n"
              f"{test}  # (2) __exception__ = AssertionError()")
    c, d = a + 2, b + 1
    return TracedTask(task_id=f"{split}/{i}", source="fixture", description="Combine a and b.",
                      buggy_code=buggy, entry_point="f", tests=[test],
                      eval_tests=[test, f"assert f({c}, {d}) == {eval(f'{c} {good} {d}')}"],
                      reference_fix=f"def f(a, b):\n    return a {good} b\n",
                      traces=[Trace(test=test, traced_code=traced, outcome="fail")])


def write_tasks(path: str, split: str, n: int) -> str:
    write_records(path, [make_task(i, split) for i in range(n)])
    return path


def _oracle_parse(text: str, task):
    lucky = zlib.crc32(text.encode("utf-8")) % 3 == 0
    return f"because {text[:8]!r}", task.reference_fix if lucky else task.buggy_code


ORACLE = formats.register_format(formats.AnswerFormat(
    name="test_oracle",
    prompt=formats.LINE_EDIT.prompt,
    parse=_oracle_parse,
    proxy_prompt=formats.LINE_EDIT.proxy_prompt,
    proxy_parse=lambda text, task: _oracle_parse(text, task)[1],
))


def save_base_checkpoint(path: str, config: ModelConfig, seed: int = 0) -> str:
    """Random parameters saved as an orbax pytree checkpoint: a stand-in pretrained model."""
    import os

    import orbax.checkpoint as ocp

    from next_jax import partitioning
    from next_jax.models import transformer

    path = os.path.abspath(path)
    params = transformer.random_params(config, partitioning.Partitioner(), seed)
    ocp.PyTreeCheckpointer().save(path, params)
    return path
