"""Fits all of one task's traces into a total size budget.

The budget is counted in tokens when a counter is given (e.g. the task vocabulary's encoder:
``lambda s: len(vocab.encode(s))``), else in characters. It is met in this order, and every trace
that loses anything is marked ``truncated``:

1. whole traces are dropped from the end (the later tests), keeping at least the first;
2. values in the remaining trace are shortened (their cap halved, down to ``min_value_chars``);
3. fewer first visits are kept per line (down to ``...;`` plus the last visit).

A dropped trace keeps its test and outcome with empty ``traced_code``, so ``traces[i]`` still
belongs to ``tests[i]``. If even step 3 does not fit, the shortest rendering is returned, marked.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple

from next_jax.tracing.config import TraceConfig
from next_jax.tracing.render import cost, render_trace

MIN_VALUE_CHARS = 12


def fit_traces(
    program: str,
    tests: Sequence[str],
    datas: Sequence[dict],
    config: TraceConfig = TraceConfig(),
    budget: Optional[int] = None,
    count_tokens: Optional[Callable[[str], int]] = None,
    min_value_chars: int = MIN_VALUE_CHARS,
) -> List[Tuple[str, bool]]:
    """Renders one trace per test and fits them into ``budget``; returns (text, truncated) pairs."""
    if len(tests) != len(datas):
        raise ValueError(f"{len(tests)} tests but {len(datas)} traces")
    texts = [render_trace(program, t, d, config) for t, d in zip(tests, datas)]
    truncated = [False] * len(texts)
    if budget is None or not texts:
        return list(zip(texts, truncated))
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    costs = [cost(t, count_tokens) for t in texts]
    keep = len(texts)
    while keep > 1 and sum(costs[:keep]) > budget:
        keep -= 1
        texts[keep], costs[keep], truncated[keep] = "", 0, True
    if sum(costs[:keep]) <= budget:
        return list(zip(texts, truncated))

    def attempt(cfg: TraceConfig, limit: Optional[int]) -> Tuple[List[str], int]:
        out = [render_trace(program, tests[i], datas[i], cfg, shorten_to=limit) for i in range(keep)]
        return out, sum(cost(t, count_tokens) for t in out)

    best_texts, best_total = texts[:keep], sum(costs[:keep])
    limit = config.max_value_chars
    cfg = config
    while best_total > budget:
        if limit > min_value_chars:
            limit = max(min_value_chars, limit // 2)
        elif cfg.head_visits > 0:
            cfg = dataclasses.replace(cfg, head_visits=cfg.head_visits - 1)
        else:
            break
        candidate, total = attempt(cfg, limit)
        if total < best_total:
            best_texts, best_total = candidate, total
    texts[:keep] = best_texts
    for i in range(keep):
        truncated[i] = True
    return list(zip(texts, truncated))
