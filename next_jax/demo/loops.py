"""The demo's repair domain: loops that mix accumulators over a list and forget the final shift.

A task is a function ``f(xs)`` that walks a short list of digits with ``k`` accumulators, each
updated from its own value, the element and the accumulator before it (all mod 10, so every
value is one digit), and returns the last one::

    def f(xs):
      q, r = 4, 7
      for x in xs:
        q = (q * 3 + x) % 10
        r = (r + q * x) % 10
      return r
    assert f([3, 1, 4]) == 9

The intended function returns ``(r + s) % 10`` for a shift ``s`` in 1..9 that the code does not
show; the tests say what it should return. The repair needs the value the buggy function returns
on the visible test, which only execution gives: the trace's ``__return__=G`` with the test's
expected ``W`` makes the fix ``return (r + W - G) % 10``. Without the trace, finding ``G`` means
running the loop in one's head; a model that cannot is left with a guess among 9 shifts.

The draws are balanced so that nothing visible without the trace predicts the shift: it is drawn
uniformly and independently of the program and the list, every update is a bijection of its own
accumulator for every element (no step such as ``v * x`` with ``x = 5`` collapses the value to one
the code gives away), the list has no 0, and the accumulators mix one another so that no feature
short of running the loop gives the returned value.

Splits are disjoint at the program level: :func:`make_splits` draws every split from one stream
and drops any program (normalised text: names renamed in order of appearance) seen before.

Each task's ``meta`` holds ``got`` (what the buggy function returns on the visible test),
``want``, ``shift``, ``returned`` (the returned name), the update forms, the initial values and
the list, from which :mod:`next_jax.demo.answers` writes the template rationale and the guessing
baselines draw their features.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from next_jax.data.records import RepairTask

_NAMES = "abcdeghjkmnpqrstuvwyz"
RESULT = "r"
# Update forms of accumulator v over the element x and the accumulator before it, p; {c} is a
# constant prime to 10. Each is a bijection of v for every x and p.
FIRST_UPDATES = (
    "({v} * {c} + x) % 10",
    "({v} + {c} * x) % 10",
    "({v} * {c} + x * x) % 10",
    "({c} * x - {v}) % 10",
)
MIXING_UPDATES = (
    "({v} + {p} * x) % 10",
    "({v} * {c} + {p}) % 10",
    "({p} * {c} - {v}) % 10",
    "({v} + {p} + x) % 10",
)
_CONSTANTS = (3, 7, 9)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How the demo's tasks are drawn.

    num_accumulators: k, the accumulators per function (each after the first mixes the one
      before it; the last is returned).
    min_len / max_len: list lengths.
    num_eval_tests: tests that judge a fix (the first is the visible, traced one).
    """

    num_accumulators: int = 2
    min_len: int = 3
    max_len: int = 3
    num_eval_tests: int = 3

    def __post_init__(self):
        if not 1 <= self.num_accumulators <= 6:
            raise ValueError(f"LoopConfig.num_accumulators must be in 1..6, got {self.num_accumulators}")
        if not 2 <= self.min_len <= self.max_len <= 6:
            raise ValueError(f"LoopConfig: need 2 <= min_len ({self.min_len}) <= max_len ({self.max_len}) <= 6")
        if self.num_eval_tests < 1:
            raise ValueError(f"LoopConfig.num_eval_tests must be >= 1, got {self.num_eval_tests}")


@dataclasses.dataclass(frozen=True)
class _Program:
    names: Tuple[str, ...]
    inits: Tuple[int, ...]
    updates: Tuple[str, ...]  # formatted expressions, in code order
    forms: Tuple[int, ...]  # index into FIRST_UPDATES (first accumulator) or MIXING_UPDATES

    def run(self, xs: Sequence[int]) -> int:
        """What the buggy function returns: the last accumulator's (``r``) final value."""
        env = dict(zip(self.names, self.inits))
        for x in xs:
            env["x"] = x
            for name, expr in zip(self.names, self.updates):
                # Our own generated integer arithmetic, evaluated here for the expected values.
                env[name] = eval(expr, {"__builtins__": {}}, env)  # noqa: S307
        return env[self.names[-1]]

    def code(self, returned: str) -> str:
        # Two-space indentation: every character of the prompt costs the byte-level model.
        body = ["def f(xs):", f"  {', '.join(self.names)} = {', '.join(map(str, self.inits))}", "  for x in xs:"]
        body += [f"    {n} = {e}" for n, e in zip(self.names, self.updates)]
        body.append(f"  return {returned}")
        return "\n".join(body) + "\n"


def shifted(name: str, want: int, got: int) -> str:
    """The repaired return expression: the returned value moved by what the test wants over what
    the trace shows."""
    return f"({name} + {want} - {got}) % 10"


def _draw_program(rng: random.Random, config: LoopConfig) -> _Program:
    k = config.num_accumulators
    # The returned accumulator is always ``r`` (the result): what the repair reads is its value,
    # not its name.
    names = tuple(rng.sample(_NAMES.replace(RESULT, ""), k - 1)) + (RESULT,)
    inits = tuple(rng.randint(0, 9) for _ in range(k))
    forms, updates = [], []
    for i, name in enumerate(names):
        table = FIRST_UPDATES if i == 0 else MIXING_UPDATES
        form = rng.randrange(len(table))
        forms.append(form)
        updates.append(table[form].format(v=name, c=rng.choice(_CONSTANTS), p=names[i - 1] if i else ""))
    return _Program(names, inits, tuple(updates), tuple(forms))


def _draw_list(rng: random.Random, config: LoopConfig) -> List[int]:
    # No 0: a product with it gives away a value without the trace.
    return [rng.randint(1, 9) for _ in range(rng.randint(config.min_len, config.max_len))]


def normalized(code: str) -> str:
    """The program with its accumulator names replaced by v0, v1, ... in order of appearance
    (what makes two programs the same for the split dedup)."""
    header = code.split("\n")[1]
    names = [n.strip() for n in header.split("=")[0].split(",")]
    mapping = {n: f"v{i}" for i, n in enumerate(names)}
    return re.sub(r"\b[a-z]\b", lambda m: mapping.get(m.group(0), m.group(0)), code)


def _try_task(rng: random.Random, config: LoopConfig, task_id: str,
              target: Optional[Tuple[int, int]] = None) -> Optional[RepairTask]:
    """A task, or None when the draw fails (too few distinct lists, or a returned value other
    than ``target``'s first)."""
    program = _draw_program(rng, config)
    # The shift is drawn apart from the program and the list: only the returned value, which
    # execution gives, tells it from the expected one.
    shift = rng.randint(1, 9) if target is None else target[1]
    lists: List[List[int]] = []
    for _ in range(50):
        if len(lists) == config.num_eval_tests:
            break
        other = _draw_list(rng, config)
        if other not in lists:
            lists.append(other)
    if len(lists) < config.num_eval_tests:
        return None
    got = program.run(lists[0])
    if target is not None and got != target[0]:
        return None
    want = (got + shift) % 10
    tests = [f"assert f({ys}) == {(program.run(ys) + shift) % 10}" for ys in lists]
    returned = program.names[-1]
    return RepairTask(
        task_id=task_id, source="demo", description="Return what the tests expect.",
        buggy_code=program.code(returned), entry_point="f", tests=tests[:1], eval_tests=tests,
        reference_fix=program.code(shifted(returned, want, got)),
        meta={"family": "shift", "names": list(program.names), "returned": returned, "got": got, "want": want,
              "shift": shift, "forms": list(program.forms), "inits": list(program.inits), "xs": lists[0],
              "bug_line": config.num_accumulators + 4},
    )


def balanced_target(index: int) -> Tuple[int, int]:
    """(returned value, shift) of task ``index`` of a balanced stream: the returned value cycles
    through 0-9 and the shift through 1-9 on a different period, so any 90 consecutive tasks hold
    every pair once and every prefix holds each value, shift and expected value about equally."""
    return index % 10, 1 + (index + index // 10) % 9


def iter_tasks(seed: int, split: str, config: LoopConfig = LoopConfig(),
               balanced: bool = False) -> Iterator[RepairTask]:
    """Endless tasks of one stream; task ``i`` depends only on (seed, split, i).

    A balanced stream draws each task until its returned value and shift are
    :func:`balanced_target`'s: a small seed set then shows every value in every place about
    equally often, so no value can be learned as a default answer in place of reading it.
    """
    index = 0
    while True:
        rng = random.Random(f"loops/{seed}/{split}/{index}")
        target = balanced_target(index) if balanced else None
        while True:
            task = _try_task(rng, config, f"{split}/{index}", target)
            if task is not None:
                yield task
                break
        index += 1


def make_splits(seed: int, counts: Mapping[str, int], config: LoopConfig = LoopConfig(),
                balanced: Sequence[str] = ()) -> Dict[str, List[RepairTask]]:
    """``{split: tasks}`` with no program (normalised text) in two splits or twice in one.

    Splits are filled in the order of ``counts``, each from its own stream (balanced for the
    splits named in ``balanced``), skipping programs already taken, so the same (seed, counts,
    config) always gives the same tasks.
    """
    seen = set()
    out: Dict[str, List[RepairTask]] = {}
    for split, count in counts.items():
        tasks: List[RepairTask] = []
        for task in iter_tasks(seed, split, config, balanced=split in balanced):
            if len(tasks) == count:
                break
            key = normalized(task.buggy_code)
            if key in seen:
                continue
            seen.add(key)
            tasks.append(task)
        out[split] = tasks
    return out
