"""MBPP-R: buggy programs for MBPP problems, NExT's training and dev repair tasks.

The paper's recipe (its data was not released): sample programs for MBPP problems from a code
LLM and keep the distinct ones that parse, run and fail at least one test. Here:

  * candidates come from a file of model samples (``Sample`` JSON Lines whose ``task_id`` is
    ``mbpp/<id>`` and whose ``fix`` is the program), or, where no samples exist yet, from the
    bug injector's typed mutants of the reference solution (:mod:`bug_injection`);
  * a candidate is kept if it parses, differs from the reference and from every kept candidate
    by its normalized AST (``ast.dump``: formatting and comments do not count), and its verdict
    on the problem's tests is ``fail`` or ``error`` (a ``timeout`` only with ``keep_timeouts``:
    its trace would show no answer); at most ``max_per_problem`` per problem, in the candidates'
    order (a seeded order for mutants);
  * the reference must pass the tests, else the problem is dropped and counted;
  * ``eval_tests`` are MBPP+'s inputs as asserts where MBPP+ has the problem and the MBPP
    reference passes them, else MBPP's tests plus its challenge tests;
  * split by problem id (:func:`split_of`), so no problem is in two splits: ``dev`` = MBPP's
    validation problems (511-600), ``train`` = its test and train problems (11-510, 601-974);
    1-10 (MBPP's few-shot prompt problems) are left out.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import zlib
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from next_jax.data import bug_injection, evalplus, mbpp
from next_jax.data.hefix_plus import check_programs
from next_jax.data.records import RecordError, RepairTask, Sample, parse_rows, read_json_lines

NAME = "mbpp_r"
KEPT_STATUSES = ("fail", "error")


def split_of(problem_id: int) -> Optional[str]:
    """'dev' for MBPP's validation problems, 'train' for its test and train ones, else None."""
    upstream = mbpp.upstream_split(problem_id)
    if upstream == "validation":
        return "dev"
    if upstream in ("test", "train"):
        return "train"
    return None


def normalized(code: str) -> Optional[str]:
    """The program's AST without positions (None if it does not parse)."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def read_samples(path: str, on_error: Optional[Callable[[RecordError], None]] = None
                 ) -> Dict[int, List[dict]]:
    """Model samples per MBPP problem id: ``[{code, sample_id, model}]`` in file order."""
    out: Dict[int, List[dict]] = collections.defaultdict(list)

    def parse(obj, where):
        sample = Sample.from_dict(obj, where=where)
        prefix, _, number = sample.task_id.rpartition("/")
        if prefix != "mbpp" or not number.isdigit():
            raise RecordError(f"task_id {sample.task_id!r} is not 'mbpp/<id>'", where=where, field="task_id")
        return int(number), sample

    for number, sample in parse_rows(read_json_lines(path, on_error), parse, on_error):
        out[number].append({"code": sample.fix, "sample_id": sample.sample_id, "model": sample.model})
    return out


def read_units(mbpp_path: str, mbppplus_path: Optional[str] = None, samples_path: Optional[str] = None,
               *, on_error: Optional[Callable[[RecordError], None]] = None,
               limit: Optional[int] = None) -> Iterator[Tuple[str, dict]]:
    """``(split, unit)`` per MBPP problem in a split: the problem, its MBPP+ problem, samples."""
    plus = {}
    if mbppplus_path:
        plus = {p.number: p for p in evalplus.read_evalplus(mbppplus_path, on_error=on_error)}
    samples = read_samples(samples_path, on_error) if samples_path else None
    count = 0
    for task in mbpp.read_mbpp(mbpp_path, on_error):
        number = task.meta["problem_id"]
        split = split_of(number)
        if split is None:
            continue
        if limit is not None and count >= limit:
            return
        count += 1
        problem = plus.get(number)
        yield split, {"task": task.to_dict(), "split": split,
                      "plus": dataclasses.asdict(problem) if problem is not None else None,
                      "samples": samples.get(number, []) if samples is not None else None}


def _candidates(task: RepairTask, unit: dict, ctx) -> List[dict]:
    if unit["samples"] is not None:
        return [dict(s, bug_source="model") for s in unit["samples"]]
    seed = zlib.crc32(f"{ctx.seed}/{task.task_id}".encode())
    mutants = bug_injection.candidate_mutants(task.reference_fix, task.entry_point, seed=seed)
    return [{"code": m.code, "bug_source": "mutation", "bug_operator": m.operator, "bug": m.description}
            for m in mutants[: ctx.max_candidates]]


def _eval_tests(task: RepairTask, unit: dict, ctx, stats) -> Tuple[List[str], str]:
    if unit["plus"] is None:
        return list(task.eval_tests), "mbpp"
    problem = evalplus.PlusProblem(**unit["plus"])
    counts: Dict[str, int] = {}
    outputs = evalplus.expected_outputs(problem, ctx.pool, timeout_per_input_s=ctx.test_timeout_s,
                                        slow_s=ctx.test_timeout_s / 4)
    tests = evalplus.eval_tests(problem, outputs, counts)
    for reason, n in counts.items():
        stats.add(f"eval_inputs_dropped/{reason}", n)
    if not tests:
        stats.add("eval_tests_fallback/empty")
        return list(task.eval_tests), "mbpp"
    status = check_programs(dataclasses.replace(task, eval_tests=tests), ctx.checker,
                            {"reference": task.reference_fix}, "eval_tests")["reference"].status
    if status != "pass":
        stats.add(f"eval_tests_fallback/reference_{status}")
        return list(task.eval_tests), "mbpp"
    return tests, "mbpp_plus"


def process_units(units: List[dict], ctx, stats) -> Iterator[RepairTask]:
    """Worker side: candidates -> dedup -> check -> cap; yields one RepairTask per kept program.

    Raises RuntimeError when the reference of every problem of a shard (three or more) errors:
    that is a broken sandbox, not bad data, and the shard must not be written as empty.
    """
    broken: List[bool] = []
    for unit in units:
        task = RepairTask.from_dict(unit["task"])
        stats.add("problems")
        candidates = _candidates(task, unit, ctx)
        seen = {normalized(task.reference_fix)}
        distinct = []
        for cand in candidates:
            key = normalized(cand["code"]) if cand["code"] is not None else None
            if key is None:
                stats.add("candidates/no_code" if cand["code"] is None else "candidates/syntax_error")
            elif key in seen:
                stats.add("candidates/duplicate")
            else:
                seen.add(key)
                distinct.append(cand)
        programs = {"reference": task.reference_fix}
        programs.update({f"candidate/{i}": c["code"] for i, c in enumerate(distinct)})
        verdicts = list(check_programs(task, ctx.checker, programs).values())
        statuses = [v.status for v in verdicts]
        if statuses[0] != "pass":
            stats.add(f"problems_dropped/reference_{statuses[0]}")
            stats.note("reference_failures", {"task_id": task.task_id, "detail": verdicts[0].detail[:300]})
            broken.append(statuses[0] == "error")
            continue
        broken.append(False)
        kept = []
        for cand, status in zip(distinct, statuses[1:]):
            stats.add(f"candidates/{status}")
            if status in KEPT_STATUSES or (ctx.keep_timeouts and status == "timeout"):
                kept.append((cand, status))
        if len(kept) > ctx.max_per_problem:
            stats.add("candidates/over_cap", len(kept) - ctx.max_per_problem)
            kept = kept[: ctx.max_per_problem]
        if not kept:
            stats.add("problems_without_tasks")
            continue
        eval_tests, eval_from = _eval_tests(task, unit, ctx, stats)
        stats.add(f"eval_tests_from/{eval_from}")
        number = task.meta["problem_id"]
        for k, (cand, status) in enumerate(kept):
            meta = dict(task.meta, split=unit["split"], eval_tests_from=eval_from,
                        check_status=status, **{key: cand[key] for key in cand if key != "code"})
            stats.add(f"bug_operator/{cand.get('bug_operator', cand['bug_source'])}")
            yield dataclasses.replace(task, task_id=f"{NAME}/{number}/{k}", source=NAME,
                                      buggy_code=cand["code"], eval_tests=eval_tests, meta=meta)
    if len(broken) >= 3 and all(broken):
        raise RuntimeError(f"every reference solution of {len(broken)} problems errored in the sandbox "
                           f"(first: {stats.notes['reference_failures'][0]}); is the sandbox working?")
