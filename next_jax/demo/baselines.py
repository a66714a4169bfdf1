"""Guessing baselines: rules that never look at the trace, fitted on fresh tasks.

Each rule sees what a prompt without the trace shows (the program and the visible test: names,
positions, update forms, constants, initial values, the list and the expected value) and picks
one accumulator other than the returned one (the failing test rules that one out). A rule is
fitted by counting, on ``count`` fresh tasks drawn from a stream no split uses, how often a
candidate with a given feature value is the right one; it then picks the candidate with the
highest rate. Scored on the test tasks by whether the pick is the right accumulator. If the
domain is balanced, every rule scores near chance, 1 / (k - 1).
"""

from __future__ import annotations

import collections
from typing import Callable, Dict, List, Mapping, Sequence

from next_jax.data.records import RepairTask
from next_jax.demo import loops

# Feature of candidate i of a task, from what the no-trace prompt shows.
Feature = Callable[[Mapping, int], object]

FEATURES: Dict[str, Feature] = {
    "position": lambda meta, i: i,
    "update_form": lambda meta, i: meta["forms"][i],
    "init_minus_want": lambda meta, i: (meta["inits"][i] - meta["want"]) % 10,
    "form_and_want_minus_last_x": lambda meta, i: (meta["forms"][i], (meta["want"] - meta["xs"][-1]) % 10),
    "form_and_want": lambda meta, i: (meta["forms"][i], meta["want"]),
}


def _candidates(meta: Mapping) -> List[int]:
    return [i for i, n in enumerate(meta["names"]) if n != meta["returned"]]


def fit(seed: int, count: int, config: loops.LoopConfig = loops.LoopConfig()) -> Dict[str, Dict[object, float]]:
    """Per rule, the rate at which a candidate with each feature value is the right one."""
    stream = loops.iter_tasks(seed, "baseline_fit", config)
    hits: Dict[str, collections.Counter] = {name: collections.Counter() for name in FEATURES}
    seen: Dict[str, collections.Counter] = {name: collections.Counter() for name in FEATURES}
    for _ in range(count):
        meta = next(stream).meta
        for i in _candidates(meta):
            right = meta["names"][i] == meta["answer"]
            for name, feature in FEATURES.items():
                value = feature(meta, i)
                seen[name][value] += 1
                hits[name][value] += int(right)
    # Add-one smoothing, so a value seen once does not decide alone.
    return {name: {v: (hits[name][v] + 1) / (seen[name][v] + 2) for v in seen[name]} for name in FEATURES}


def pick(rule: Mapping[object, float], feature: Feature, meta: Mapping) -> str:
    candidates = _candidates(meta)
    best = max(candidates, key=lambda i: (rule.get(feature(meta, i), 0.5), -i))
    return meta["names"][best]


def evaluate(tasks: Sequence[RepairTask], fitted: Mapping[str, Mapping[object, float]]) -> Dict[str, List[int]]:
    """Per rule (and ``chance``, the expected score of a uniform pick), 0/1 per task."""
    out: Dict[str, List[int]] = {}
    for name, feature in FEATURES.items():
        out[name] = [int(pick(fitted[name], feature, t.meta) == t.meta["answer"]) for t in tasks]
    out["chance"] = [1.0 / len(_candidates(t.meta)) for t in tasks]
    return out
