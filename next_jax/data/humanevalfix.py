"""HumanEvalFix (the Python part of HumanEvalPack) as RepairTasks.

HumanEvalFix gives, per HumanEval problem, a ``declaration`` (imports and signature), a
``buggy_solution`` body, the ``canonical_solution`` and two test suites written as
``def check(fn): assert ...`` followed by ``check(entry_point)``: ``example_test`` (the docstring's
examples) and ``test`` (the full suite), each split into single tests by :mod:`check_suites`.

Published at bigcode-project/octopack (evaluation/create/humaneval-x/data/python/data/
humanevalpack.jsonl) and on Hugging Face as ``bigcode/humanevalpack`` (config ``python``); MIT.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

from absl import logging

from next_jax.data.check_suites import split_check_suite, split_check_suite_with_setup  # noqa: F401
from next_jax.data.records import RecordError, RepairTask, parse_rows, read_json_lines

SOURCE = "humanevalfix"
EXAMPLES_FALLBACK = 3


def task_from_record(obj: dict, where: str = "") -> RepairTask:
    """One HumanEvalPack record -> RepairTask (tests: the examples; eval_tests: the full suite)."""
    for field in ("task_id", "declaration", "buggy_solution", "canonical_solution", "test",
                  "example_test", "entry_point", "docstring"):
        if field not in obj:
            raise RecordError("missing field of a HumanEvalPack record", where=where, field=field)
    entry = obj["entry_point"]
    try:
        eval_tests = split_check_suite(obj["test"], entry)
    except SyntaxError as e:
        raise RecordError(f"test code does not parse: {e}", where=where, field="test") from None
    meta = {"bug_type": obj.get("bug_type", ""), "failure_symptoms": obj.get("failure_symptoms", ""),
            "original_task_id": obj["task_id"]}
    try:
        tests = split_check_suite(obj["example_test"], entry)
    except SyntaxError as e:
        # One published record (Python/119) carries solution code in example_test; the prompt then
        # shows the first asserts of the full suite instead, and says so in meta.
        logging.warning("%s: example_test does not parse (%s); showing the first %d asserts of test",
                        where, e, EXAMPLES_FALLBACK)
        tests = eval_tests[:EXAMPLES_FALLBACK]
        meta["tests_from"] = "test"
    return RepairTask(
        task_id=f"{SOURCE}/{obj['task_id'].split('/')[-1]}",
        source=SOURCE,
        description=obj["docstring"],
        buggy_code=obj["declaration"] + obj["buggy_solution"],
        entry_point=entry,
        tests=tests,
        eval_tests=eval_tests,
        setup_code="",
        reference_fix=obj["declaration"] + obj["canonical_solution"],
        meta=meta,
    )


def read_humanevalfix(path: str, on_error: Optional[Callable[[RecordError], None]] = None
                      ) -> Iterator[RepairTask]:
    """Reads ``humanevalpack.jsonl`` (Python) and yields one RepairTask per problem.

    A malformed row raises a RecordError (file:line and field), or goes to ``on_error``.
    """
    yield from parse_rows(read_json_lines(path, on_error), task_from_record, on_error)
