"""A procedural program-repair domain small enough for a character-level model on a CPU.

Every task is a short Python function ``f(a, b)`` with exactly one injected bug, one visible test
(shown in the prompt and traced) and ``eval_tests`` held out to judge a fix. The families are
chosen so that the execution trace carries what is needed to find the bug: the function computes
intermediate values that only the trace shows, and the test's expected value is one of them.

  pick_var    several variables are assigned; ``return`` names the wrong one. The trace shows
              every variable's value, so the fix is the name whose value the test expects.
  pick_index  a list is built and ``return ys[i]`` picks the wrong element. The trace shows the
              list; the fix is the position of the expected value in it.
  off_const   ``return EXPR + K`` with ``K`` off by a few. The trace shows the returned value; the
              fix adds the difference between the expected and the returned value to ``K``.
  add_offset  ``return v`` lacks a constant offset (``return v + 3``). The trace shows the returned
              value, so the offset is the expected value minus it: with ``max_value=9`` a table of
              one-digit differences that a tiny model learns from examples, a few at a time.

Without the trace a model has to evaluate the arithmetic itself, which a tiny model cannot do,
so the no-trace prompt is the harder one by construction. Everything is deterministic given the
seed: tasks are built from ``random.Random`` streams derived from (seed, split, index).

Each task's ``meta`` records the family, the one-line edit that repairs it and the facts of its
visible test (``got``: what the buggy program returns, ``want``: what the test expects,
``fix_from``: what holds the expected value), from which :mod:`next_jax.demo.answers` writes the
template rationale.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from next_jax.data.records import RepairTask
from next_jax.errors import UserValueError

FAMILIES = ("pick_var", "pick_index", "off_const", "add_offset")
_VAR_NAMES = "cdeghkmnpqrstuvwxyz"
_LIST_NAMES = ("ys", "xs", "vs", "ws", "out", "res")

# Expression templates over the arguments a, b; {k} is a small constant, {p} an earlier variable.
_ARG_EXPRS = ("a + b", "a - b", "b - a", "a * b", "a + {k}", "b + {k}", "a * {k}", "b * {k}",
              "a * b + {k}", "a + b + {k}", "a - {k}", "b - {k}", "a * b - {k}", "a * {k} + b")
_PREV_EXPRS = ("{p} + a", "{p} + b", "{p} * 2", "{p} - a", "{p} - b", "{p} + {k}", "{p} * b")


@dataclasses.dataclass(frozen=True)
class DomainConfig:
    """How tasks are drawn.

    families / family_weights: which bug families and how often each is drawn.
    min_values / max_values: how many variables (pick_var) or list elements (pick_index).
    max_arg: test arguments are drawn from 0..max_arg.
    max_offset: add_offset's missing offsets are drawn from -max_offset..max_offset (not 0).
    max_value: None, or every value the visible test's trace shows (arguments, variables, list
      elements, the expected value) lies in 0..max_value. 9 keeps every value one character, so
      finding the variable that holds the expected value is a one-token match.
    num_eval_tests: held-out tests (the visible one included) that judge a fix.
    """

    families: Tuple[str, ...] = ("pick_var", "pick_index")
    family_weights: Optional[Tuple[float, ...]] = None
    min_values: int = 3
    max_values: int = 4
    max_arg: int = 9
    max_value: Optional[int] = None
    max_offset: int = 9
    num_eval_tests: int = 3

    def __post_init__(self):
        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown:
            raise UserValueError(f"DomainConfig.families: {list(self.families)} must be a non-empty subset of {FAMILIES}")
        if self.family_weights is not None and len(self.family_weights) != len(self.families):
            raise UserValueError(f"DomainConfig.family_weights: {len(self.family_weights)} weights for "
                             f"{len(self.families)} families")
        if not 2 <= self.min_values <= self.max_values <= len(_VAR_NAMES):
            raise UserValueError(f"DomainConfig: need 2 <= min_values ({self.min_values}) <= max_values "
                             f"({self.max_values}) <= {len(_VAR_NAMES)}")
        if self.max_arg < 2:
            raise UserValueError(f"DomainConfig.max_arg must be >= 2, got {self.max_arg}")
        if self.max_value is not None and self.max_value < self.max_arg:
            raise UserValueError(f"DomainConfig.max_value ({self.max_value}) must be >= max_arg ({self.max_arg})")
        if self.max_offset < 1:
            raise UserValueError(f"DomainConfig.max_offset must be >= 1, got {self.max_offset}")
        if self.num_eval_tests < 1:
            raise UserValueError(f"DomainConfig.num_eval_tests must be >= 1, got {self.num_eval_tests}")


@dataclasses.dataclass(frozen=True)
class _Draft:
    """A program under construction: its lines, how to evaluate it, and its one-line edit."""

    lines: List[str]  # the buggy program
    bug_line: int  # 1-based
    fixed_line: str  # the whole repaired line, indentation included
    env_of: object  # (a, b) -> dict of every value the program computes, plus 'return' (correct)
    buggy_of: object  # (a, b) -> the buggy program's return value
    answer_name: str  # what holds the expected value (a variable name, 'ys[1]', '+2', ...)
    decoys: object  # (a, b) -> values that must differ from the expected one on the visible test


def _expr(rng: random.Random, previous: Sequence[str]) -> str:
    if previous and rng.random() < 0.4:
        return rng.choice(_PREV_EXPRS).format(p=rng.choice(previous), k=rng.randint(1, 9))
    return rng.choice(_ARG_EXPRS).format(k=rng.randint(1, 9))


def _evaluate(names: Sequence[str], exprs: Sequence[str], a: int, b: int) -> Dict[str, int]:
    env = {"a": a, "b": b}
    for name, expr in zip(names, exprs):
        # Our own generated arithmetic over ints: evaluated here to get the expected values.
        env[name] = eval(expr, {"__builtins__": {}}, env)  # noqa: S307
    return env


def _pick_var(rng: random.Random, config: DomainConfig) -> _Draft:
    count = rng.randint(config.min_values, config.max_values)
    names = rng.sample(_VAR_NAMES, count)
    exprs: List[str] = []
    for i in range(count):
        exprs.append(_expr(rng, names[:i]))
    target, wrong = rng.sample(range(count), 2)
    lines = ["def f(a, b):"] + [f"    {n} = {e}" for n, e in zip(names, exprs)] + [f"    return {names[wrong]}"]

    def env_of(a, b):
        env = _evaluate(names, exprs, a, b)
        return dict(env, **{"return": env[names[target]]})

    def decoys(a, b):
        env = _evaluate(names, exprs, a, b)
        return [env[k] for k in ["a", "b"] + [n for j, n in enumerate(names) if j != target]]

    return _Draft(lines, len(lines), f"    return {names[target]}", env_of,
                  lambda a, b: _evaluate(names, exprs, a, b)[names[wrong]], names[target], decoys)


def _pick_index(rng: random.Random, config: DomainConfig) -> _Draft:
    count = rng.randint(config.min_values, config.max_values)
    name = rng.choice(_LIST_NAMES)
    exprs = [_expr(rng, ()) for _ in range(count)]
    target, wrong = rng.sample(range(count), 2)
    lines = ["def f(a, b):", f"    {name} = [{', '.join(exprs)}]", f"    return {name}[{wrong}]"]

    def values(a, b):
        return [eval(e, {"__builtins__": {}}, {"a": a, "b": b}) for e in exprs]  # noqa: S307

    def env_of(a, b):
        vals = values(a, b)
        return {"a": a, "b": b, name: vals, "return": vals[target]}

    def decoys(a, b):
        vals = values(a, b)
        return [a, b] + [v for j, v in enumerate(vals) if j != target]

    return _Draft(lines, 3, f"    return {name}[{target}]", env_of, lambda a, b: values(a, b)[wrong],
                  f"{name}[{target}]", decoys)


def _off_const(rng: random.Random, config: DomainConfig) -> _Draft:
    name = rng.choice(_VAR_NAMES)
    expr = _expr(rng, ())
    k = rng.randint(1, 9)
    delta = rng.choice([-3, -2, -1, 1, 2, 3])
    lines = ["def f(a, b):", f"    {name} = {expr}", f"    return {name} + {k + delta}"]

    def env_of(a, b):
        env = _evaluate([name], [expr], a, b)
        return dict(env, **{"return": env[name] + k})

    return _Draft(lines, 3, f"    return {name} + {k}", env_of,
                  lambda a, b: _evaluate([name], [expr], a, b)[name] + k + delta,
                  f"{-delta:+d}", lambda a, b: [])


def _add_offset(rng: random.Random, config: DomainConfig) -> _Draft:
    count = rng.randint(1, 2)
    names = rng.sample(_VAR_NAMES, count)
    exprs = [_expr(rng, names[:i]) for i in range(count)]
    last = names[-1]
    delta = rng.choice([d for d in range(-config.max_offset, config.max_offset + 1) if d])
    op = "+" if delta > 0 else "-"
    lines = ["def f(a, b):"] + [f"    {n} = {e}" for n, e in zip(names, exprs)] + [f"    return {last}"]

    def env_of(a, b):
        env = _evaluate(names, exprs, a, b)
        return dict(env, **{"return": env[last] + delta})

    return _Draft(lines, len(lines), f"    return {last} {op} {abs(delta)}", env_of,
                  lambda a, b: _evaluate(names, exprs, a, b)[last], f"{delta:+d}", lambda a, b: [])


_BUILDERS = {"pick_var": _pick_var, "pick_index": _pick_index, "off_const": _off_const, "add_offset": _add_offset}


def _args(rng: random.Random, config: DomainConfig) -> Tuple[int, int]:
    return rng.randint(0, config.max_arg), rng.randint(0, config.max_arg)


def _try_task(rng: random.Random, family: str, task_id: str, config: DomainConfig) -> Optional[RepairTask]:
    """One draw; None when the draw is unusable (ambiguous visible test, a bug no test catches)."""
    draft = _BUILDERS[family](rng, config)
    a, b = _args(rng, config)
    env = draft.env_of(a, b)
    want = env["return"]
    got = draft.buggy_of(a, b)
    # The visible test must fail, and the trace must point at one answer only.
    if got == want or want in draft.decoys(a, b):
        return None
    if config.max_value is not None and not all(0 <= v <= config.max_value for v in _shown_values(env, got)):
        return None
    args = [(a, b)]
    for _ in range(50):
        if len(args) == config.num_eval_tests:
            break
        pair = _args(rng, config)
        if pair not in args:
            args.append(pair)
    if len(args) < config.num_eval_tests:
        return None
    tests = [f"assert f({x}, {y}) == {draft.env_of(x, y)['return']}" for x, y in args]
    fixed = list(draft.lines)
    fixed[draft.bug_line - 1] = draft.fixed_line
    buggy_code = "\n".join(draft.lines) + "\n"
    return RepairTask(
        task_id=task_id,
        source="demo",
        description="Return what the tests expect.",
        buggy_code=buggy_code,
        entry_point="f",
        tests=tests[:1],
        eval_tests=tests,
        reference_fix="\n".join(fixed) + "\n",
        meta={"family": family, "bug_line": draft.bug_line, "fixed_line": draft.fixed_line.strip(),
              "got": got, "want": want, "fix_from": draft.answer_name},
    )


def _shown_values(env: Dict[str, object], got: int) -> List[int]:
    """Every value the visible test's trace shows: the program's values (list elements one by one)
    and what the buggy program returns."""
    values = [got]
    for value in env.values():
        values.extend(value if isinstance(value, list) else [value])
    return values


def _family_for(rng: random.Random, config: DomainConfig) -> str:
    weights = config.family_weights or [1.0] * len(config.families)
    return rng.choices(config.families, weights=weights)[0]


def generate(seed: int, split: str, count: int, config: DomainConfig = DomainConfig()) -> List[RepairTask]:
    """``count`` tasks of ``split``; the same (seed, split, count, config) gives the same tasks.

    Task ``i`` depends only on (seed, split, i), so a longer list extends a shorter one.
    """
    return list(iter_tasks(seed, split, count, config))


def iter_tasks(seed: int, split: str, count: int, config: DomainConfig = DomainConfig()) -> Iterator[RepairTask]:
    for index in range(count):
        rng = random.Random(f"{seed}/{split}/{index}")
        while True:
            task = _try_task(rng, _family_for(rng, config), f"{split}/{index}", config)
            if task is not None:
                yield task
                break
