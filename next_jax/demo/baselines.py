"""Guessing baselines: rules that never look at the trace, fitted on fresh tasks.

Each rule sees what a prompt without the trace shows (the program and the visible test: update
forms, constants, initial values, the list and the expected value) and guesses the shift, which
with the expected value is the fix (the failing test rules out a shift of 0). A rule is fitted by
counting, on ``count`` fresh tasks drawn from a stream no split uses, how often each shift goes
with each value of its feature; it then guesses the most frequent one. Scored on the test tasks
by whether the guess is the task's shift. If the domain is balanced, every rule scores near
chance, 1 / 9.
"""

from __future__ import annotations

import collections
from typing import Callable, Dict, List, Mapping, Sequence

from next_jax.data.records import RepairTask
from next_jax.demo import loops

# A rule's feature of a task, from what the no-trace prompt shows.
Feature = Callable[[Mapping], object]

FEATURES: Dict[str, Feature] = {
    "always_most_common": lambda meta: 0,
    "from_want": lambda meta: meta["want"],
    "from_forms_and_want": lambda meta: (tuple(meta["forms"]), meta["want"]),
    "from_inits_and_want": lambda meta: (tuple(meta["inits"]), meta["want"]),
    "from_last_x_and_want": lambda meta: (meta["xs"][-1], meta["want"]),
    "from_list_sum_and_want": lambda meta: ((sum(meta["xs"]) + sum(meta["inits"])) % 10, meta["want"]),
    "from_list_and_want": lambda meta: (tuple(meta["xs"]), meta["want"]),
}


def fit(seed: int, count: int, config: loops.LoopConfig = loops.LoopConfig()) -> Dict[str, Dict[object, int]]:
    """Per rule, the shift it guesses for each feature value seen (the most frequent; ties go to
    the smaller shift, and an unseen value gets the overall most frequent)."""
    stream = loops.iter_tasks(seed, "baseline_fit", config)
    counts: Dict[str, Dict[object, collections.Counter]] = {n: collections.defaultdict(collections.Counter)
                                                            for n in FEATURES}
    overall: collections.Counter = collections.Counter()
    for _ in range(count):
        meta = next(stream).meta
        overall[meta["shift"]] += 1
        for name, feature in FEATURES.items():
            counts[name][feature(meta)][meta["shift"]] += 1
    default = min(overall, key=lambda s: (-overall[s], s))
    fitted: Dict[str, Dict[object, int]] = {}
    for name, table in counts.items():
        fitted[name] = {value: min(c, key=lambda s: (-c[s], s)) for value, c in table.items()}
        fitted[name][None] = default
    return fitted


def guess(rule: Mapping[object, int], feature: Feature, meta: Mapping) -> int:
    return rule.get(feature(meta), rule[None])


def evaluate(tasks: Sequence[RepairTask], fitted: Mapping[str, Mapping[object, int]]) -> Dict[str, List[float]]:
    """Per rule (and ``chance``, the expected score of a uniform guess), 0/1 per task."""
    out: Dict[str, List[float]] = {}
    for name, feature in FEATURES.items():
        out[name] = [float(guess(fitted[name], feature, t.meta) == t.meta["shift"]) for t in tasks]
    out["chance"] = [1.0 / 9.0 for _ in tasks]
    return out
