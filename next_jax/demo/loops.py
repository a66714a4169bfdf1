"""The demo's repair domain: loops that keep several accumulators and return the wrong one.

A task is a function ``f(xs)`` that walks a short list of digits and keeps ``k`` accumulators, each
with its own update (sums, weighted mixes, all mod 10 so every value is one digit)::

    def f(xs):
        q, d, m, s = 4, 0, 7, 2
        for x in xs:
            q = (q * 3 + x) % 10
            d = (d + x * x) % 10
            m = (m + x + 6) % 10
            s = (s * x + 1) % 10
        return d
    assert f([3, 1, 4]) == 9

The bug is ``return d`` where the test expects another accumulator's value. The execution trace
shows every accumulator's value at every iteration, so the repair is a READ of the trace: the
accumulator whose final traced value equals the expected one. Without the trace, finding it means
running the loop in one's head; a model that cannot do that is left with chance, 1 / (k - 1)
(the returned name is excluded by the failing test). The draws are balanced so that nothing
visible without the trace predicts the answer: the program and the list are drawn first, then the
right accumulator uniformly among those whose final value no other one ends with (so its position
is uniform and only the execution tells which it is); names are shuffled, every update form is
equally likely at every position, every update is a bijection of the accumulator (no step such as
``v * x`` with ``x = 5`` collapses it to a value the code gives away) and the list has no 0.

Splits are disjoint at the program level: :func:`make_splits` draws every split from one stream
and drops any program (normalised text: names renamed in order of appearance) seen before.

Each task's ``meta`` holds ``finals`` (each accumulator's final value on the visible test, in
code order), ``answer`` (the correct name), ``returned`` (the buggy one), ``want`` and the update
forms, from which :mod:`next_jax.demo.answers` writes the template rationale and the guessing
baselines draw their features.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from next_jax.data.records import RepairTask

_NAMES = "abcdeghjkmnpqrstuvwyz"
# Update forms of accumulator v over the element x; {c} is a constant prime to 10. Each is a
# bijection of v for every x, so no step collapses the value to something the code alone gives
# away (as v * x would with x = 5).
UPDATES = (
    "({v} + x) % 10",
    "({v} + {c} * x) % 10",
    "({v} * {c} + x) % 10",
    "({v} + x * x) % 10",
    "({v} + x + {c}) % 10",
    "({c} * x - {v}) % 10",
    "({v} * {c} + x * x) % 10",
)
_CONSTANTS = (3, 7, 9)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How the demo's tasks are drawn.

    num_accumulators: k, the accumulators per function (chance without the trace: 1 / (k - 1)).
    min_len / max_len: list lengths (with <= 4 elements the tracer shows every iteration).
    num_eval_tests: tests that judge a fix (the first is the visible, traced one).
    """

    num_accumulators: int = 4
    min_len: int = 3
    max_len: int = 3
    num_eval_tests: int = 3

    def __post_init__(self):
        if not 2 <= self.num_accumulators <= 6:
            raise ValueError(f"LoopConfig.num_accumulators must be in 2..6, got {self.num_accumulators}")
        if not 1 <= self.min_len <= self.max_len <= 6:
            raise ValueError(f"LoopConfig: need 1 <= min_len ({self.min_len}) <= max_len ({self.max_len}) <= 6")
        if self.num_eval_tests < 1:
            raise ValueError(f"LoopConfig.num_eval_tests must be >= 1, got {self.num_eval_tests}")


@dataclasses.dataclass(frozen=True)
class _Program:
    names: Tuple[str, ...]
    inits: Tuple[int, ...]
    updates: Tuple[str, ...]  # formatted expressions, in code order
    forms: Tuple[int, ...]  # index into UPDATES

    def history(self, xs: Sequence[int]) -> List[List[int]]:
        """Every value each accumulator takes (its initial value first), in code order."""
        env = dict(zip(self.names, self.inits))
        seen = [[v] for v in self.inits]
        for x in xs:
            for i, (name, expr) in enumerate(zip(self.names, self.updates)):
                env["x"] = x
                # Our own generated integer arithmetic, evaluated here for the expected values.
                env[name] = eval(expr, {"__builtins__": {}}, env)  # noqa: S307
                seen[i].append(env[name])
        return seen

    def run(self, xs: Sequence[int]) -> List[int]:
        return [values[-1] for values in self.history(xs)]

    def code(self, returned: str) -> str:
        # Two-space indentation: every character of the prompt costs the byte-level model.
        body = [f"def f(xs):", f"  {', '.join(self.names)} = {', '.join(map(str, self.inits))}", "  for x in xs:"]
        body += [f"    {n} = {e}" for n, e in zip(self.names, self.updates)]
        body.append(f"  return {returned}")
        return "\n".join(body) + "\n"


def _draw_program(rng: random.Random, config: LoopConfig) -> _Program:
    k = config.num_accumulators
    names = tuple(rng.sample(_NAMES, k))
    inits = tuple(rng.randint(0, 9) for _ in range(k))
    forms = tuple(rng.randrange(len(UPDATES)) for _ in range(k))
    updates = tuple(UPDATES[f].format(v=n, c=rng.choice(_CONSTANTS)) for f, n in zip(forms, names))
    return _Program(names, inits, updates, forms)


def _draw_list(rng: random.Random, config: LoopConfig) -> List[int]:
    # No 0: a product with it gives away its final value without the trace.
    return [rng.randint(1, 9) for _ in range(rng.randint(config.min_len, config.max_len))]


def normalized(code: str) -> str:
    """The program with its accumulator names replaced by v0, v1, ... in order of appearance
    (what makes two programs the same for the split dedup)."""
    header = code.split("\n")[1]
    names = [n.strip() for n in header.split("=")[0].split(",")]
    mapping = {n: f"v{i}" for i, n in enumerate(names)}
    return re.sub(r"\b[a-z]\b", lambda m: mapping.get(m.group(0), m.group(0)), code)


def _try_task(rng: random.Random, config: LoopConfig, task_id: str) -> Optional[RepairTask]:
    program = _draw_program(rng, config)
    k = config.num_accumulators
    xs = _draw_list(rng, config)
    finals = program.run(xs)
    # The trace must point at one accumulator: the right one is drawn uniformly among those whose
    # final value no other accumulator ends with (drawn after the program and the list, so the
    # code and the test alone say nothing about which one it is).
    unique = [i for i in range(k) if finals.count(finals[i]) == 1]
    if not unique:
        return None
    answer = rng.choice(unique)
    returned = rng.choice([i for i in range(k) if i != answer])
    want = finals[answer]
    lists = [xs]
    for _ in range(50):
        if len(lists) == config.num_eval_tests:
            break
        other = _draw_list(rng, config)
        if other not in lists:
            lists.append(other)
    if len(lists) < config.num_eval_tests:
        return None
    tests = [f"assert f({ys}) == {program.run(ys)[answer]}" for ys in lists]
    name, wrong = program.names[answer], program.names[returned]
    return RepairTask(
        task_id=task_id, source="demo", description="Return what the tests expect.",
        buggy_code=program.code(wrong), entry_point="f", tests=tests[:1], eval_tests=tests,
        reference_fix=program.code(name),
        meta={"family": "accumulators", "names": list(program.names), "finals": finals, "answer": name,
              "returned": wrong, "want": finals[answer], "got": finals[returned], "forms": list(program.forms),
              "inits": list(program.inits), "xs": xs, "bug_line": k + 4},
    )


def iter_tasks(seed: int, split: str, config: LoopConfig = LoopConfig()) -> Iterator[RepairTask]:
    """Endless tasks of one stream; task ``i`` depends only on (seed, split, i)."""
    index = 0
    while True:
        rng = random.Random(f"loops/{seed}/{split}/{index}")
        while True:
            task = _try_task(rng, config, f"{split}/{index}")
            if task is not None:
                yield task
                break
        index += 1


def make_splits(seed: int, counts: Mapping[str, int], config: LoopConfig = LoopConfig()) -> Dict[str, List[RepairTask]]:
    """``{split: tasks}`` with no program (normalised text) in two splits or twice in one.

    Splits are filled in the order of ``counts``, each from its own stream, skipping programs
    already taken, so the same (seed, counts, config) always gives the same tasks.
    """
    seen = set()
    out: Dict[str, List[RepairTask]] = {}
    for split, count in counts.items():
        tasks: List[RepairTask] = []
        for task in iter_tasks(seed, split, config):
            if len(tasks) == count:
                break
            key = normalized(task.buggy_code)
            if key in seen:
                continue
            seen.add(key)
            tasks.append(task)
        out[split] = tasks
    return out
