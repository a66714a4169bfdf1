"""HeFix+: HumanEvalFix's 164 human-written bugs, judged by HumanEval+'s larger test suites.

NExT evaluates on HumanEvalFix with EvalPlus's tests; neither the paper's file nor its recipe
was published, so this is ours:

  * ``buggy_code`` = HumanEvalFix's ``declaration + buggy_solution``; ``reference_fix`` its
    ``declaration + canonical_solution``; ``description`` its docstring;
  * ``tests`` (shown in the prompt and traced) = HumanEval's own check suite, one assert each
    (:mod:`check_suites`); ``eval_tests`` = every HumanEval+ input (base and plus) as an assert
    on the canonical solution's output, computed in the sandbox (:mod:`evalplus`).

Every task is checked in the sandbox: EvalPlus's canonical solution (whose outputs the eval
tests hold) must pass every eval test, HumanEvalFix's canonical solution every test, and the
buggy program must fail at least one eval test. A task where that does not hold is kept, marked
in ``meta['checks']`` and listed in the build's stats (``violations``), never dropped silently.

EvalPlus corrected several of HumanEval's canonical solutions (e.g. ``filter_integers`` on
booleans, ``change_base(0, b)``, ``vowels_count('')``), so HumanEvalFix's canonical solution,
the natural ``reference_fix``, fails some eval tests. There ``reference_fix`` is EvalPlus's
canonical solution instead and ``meta['reference_from']`` says ``evalplus``; that is counted.
Inputs on which the canonical solution itself runs longer than a quarter of the test timeout
are dropped (``eval_inputs_dropped/canonical_slow``): within the timeout, a correct fix could
not be told from a hanging one on them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from next_jax.data import evalplus, humanevalfix
from next_jax.data.check_suites import split_check_suite
from next_jax.data.records import RecordError, RepairTask, Sample, Verdict, parse_rows, read_json_lines

NAME = "hefix_plus"
SPLIT = "test"


def task_from_record(obj: dict, where: str = "") -> RepairTask:
    """One HumanEvalPack record -> the HeFix+ task, with ``eval_tests`` still to be filled."""
    base = humanevalfix.task_from_record(obj, where)
    try:
        tests = split_check_suite(obj["test"], obj["entry_point"])
    except SyntaxError as e:
        raise RecordError(f"test code does not parse: {e}", where=where, field="test") from None
    number = obj["task_id"].rsplit("/", 1)[-1]
    meta = dict(base.meta, humaneval_task_id=f"HumanEval/{number}")
    return dataclasses.replace(base, task_id=f"{NAME}/{number}", source=NAME, tests=tests,
                               eval_tests=list(tests), meta=meta)


def read_units(humanevalfix_path: str, humanevalplus_path: Optional[str], *,
               on_error: Optional[Callable[[RecordError], None]] = None, limit: Optional[int] = None
               ) -> Iterator[Tuple[str, dict]]:
    """``(split, unit)`` per problem: the task and its HumanEval+ problem (None if it has none)."""
    plus: Dict[str, evalplus.PlusProblem] = {}
    if humanevalplus_path:
        plus = {p.task_id: p for p in evalplus.read_evalplus(humanevalplus_path, on_error=on_error)}
    rows = read_json_lines(humanevalfix_path, on_error)
    for i, task in enumerate(parse_rows(rows, task_from_record, on_error)):
        if limit is not None and i >= limit:
            return
        problem = plus.get(task.meta["humaneval_task_id"])
        yield SPLIT, {"task": task.to_dict(),
                      "plus": dataclasses.asdict(problem) if problem is not None else None}


def check_programs(task: RepairTask, checker, programs: Dict[str, Optional[str]],
                   field: str = "tests") -> Dict[str, Verdict]:
    """The Verdict of each named program on the task's ``tests`` or ``eval_tests``.

    ``checker`` judges ``tests``; for the eval tests it gets a copy of the task whose tests are
    the eval tests, so one checker (one sandbox pool) serves both.
    """
    judged = task if field == "tests" else dataclasses.replace(task, tests=list(task.eval_tests))
    samples = [Sample(task_id=task.task_id, iteration=0, sample_id=f"{task.task_id}/{name}",
                      prompt_variant="no_trace", text="", rationale="", fix=code)
               for name, code in programs.items()]
    verdicts = checker.check({task.task_id: judged}, samples)
    return dict(zip(programs, verdicts))


def _checks(task: RepairTask, checker, evalplus_canonical: Optional[str]) -> Dict[str, str]:
    """Verdict statuses of the canonical solutions and the buggy program on both test sets."""
    programs = {"reference": task.reference_fix, "buggy": task.buggy_code}
    out = {}
    for field in ("tests", "eval_tests"):
        if field == "eval_tests" and evalplus_canonical is not None:
            programs["evalplus_canonical"] = evalplus_canonical
        for who, verdict in check_programs(task, checker, programs, field).items():
            out[f"{who}_{field}"] = verdict.status
    return out


def violations(checks: Dict[str, str]) -> List[str]:
    """What a HeFix+ task breaks, from its ``meta['checks']`` (empty when it is sound)."""
    why = []
    canonical = "evalplus_canonical_eval_tests" if "evalplus_canonical_eval_tests" in checks else "reference_eval_tests"
    if checks.get(canonical) != "pass":
        why.append(f"canonical solution fails eval tests ({checks.get(canonical)})")
    if checks.get("reference_tests") != "pass":
        why.append(f"reference fails tests ({checks.get('reference_tests')})")
    if checks.get("buggy_eval_tests") == "pass":
        why.append("buggy program passes every eval test")
    return why


def process_units(units: List[dict], ctx, stats) -> Iterator[RepairTask]:
    """Worker side: expected outputs, eval tests, checks; yields the finished RepairTasks.

    Raises RuntimeError when HumanEvalFix's canonical solution errors on its own tests for every
    problem of a shard (three or more): a broken sandbox, not data to write.
    """
    broken: List[bool] = []
    for unit in units:
        task = RepairTask.from_dict(unit["task"])
        counts: Dict[str, int] = {}
        canonical = None
        if unit["plus"] is not None:
            problem = evalplus.PlusProblem(**unit["plus"])
            outputs = evalplus.expected_outputs(problem, ctx.pool, timeout_per_input_s=ctx.test_timeout_s,
                                                slow_s=ctx.test_timeout_s / 4)
            eval_tests = evalplus.eval_tests(problem, outputs, counts)
            stats.add("eval_inputs", len(problem.inputs))
            canonical = problem.program
        else:
            eval_tests = list(task.tests)
            counts["no_evalplus_problem"] = 1
        for reason, n in counts.items():
            stats.add(f"eval_inputs_dropped/{reason}", n)
        task = dataclasses.replace(task, eval_tests=eval_tests)
        checks = _checks(task, ctx.checker, canonical)
        broken.append(checks["reference_tests"] == "error")
        meta = dict(task.meta, checks=checks, eval_inputs_dropped=counts, reference_from="humanevalfix")
        if checks.get("reference_eval_tests") != "pass" and checks.get("evalplus_canonical_eval_tests") == "pass":
            task = dataclasses.replace(task, reference_fix=canonical)
            meta["reference_from"] = "evalplus"
        stats.add(f"reference_from/{meta['reference_from']}")
        task = dataclasses.replace(task, meta=meta)
        stats.add("eval_tests", len(eval_tests))
        for key, status in checks.items():
            stats.add(f"check/{key}/{status}")
        for why in violations(checks):
            stats.note("violations", {"task_id": task.task_id, "why": why})
        stats.add(f"bug_type/{task.meta.get('bug_type') or 'unknown'}")
        yield task
    if len(broken) >= 3 and all(broken):
        raise RuntimeError(f"the canonical solutions of all {len(broken)} problems of a shard errored "
                           "on their own tests in the sandbox; is the sandbox working?")
