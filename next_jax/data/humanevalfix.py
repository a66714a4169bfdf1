"""HumanEvalFix (the Python part of HumanEvalPack) as RepairTasks.

HumanEvalFix gives, per HumanEval problem, a ``declaration`` (imports and signature), a
``buggy_solution`` body, the ``canonical_solution`` and two test suites written as
``def check(fn): assert ...`` followed by ``check(entry_point)``: ``example_test`` (the docstring's
examples) and ``test`` (the full suite). NExT shows and traces single assert statements, so each
suite is split into one statement per assert with the checker's parameter renamed to the entry
point. A suite that is more than a list of asserts (loops, helpers, imports) is kept whole as one
test, which the executor runs as a statement block.

Published at bigcode-project/octopack (evaluation/create/humaneval-x/data/python/data/
humanevalpack.jsonl) and on Hugging Face as ``bigcode/humanevalpack`` (config ``python``); MIT.
"""

from __future__ import annotations

import ast
from typing import Iterator, List, Tuple

from absl import logging

from next_jax.data.records import RecordError, RepairTask, read_json_lines

SOURCE = "humanevalfix"
EXAMPLES_FALLBACK = 3


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name):
        if node.id == self.old:
            return ast.copy_location(ast.Name(id=self.new, ctx=node.ctx), node)
        return node


def _is_check_call(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "check")


def _is_metadata(node: ast.stmt) -> bool:
    """HumanEval's suites start with ``METADATA = {...}``, which no test reads."""
    return isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "METADATA" for t in node.targets)


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def split_check_suite_with_setup(test_code: str, entry_point: str) -> List[Tuple[str, str]]:
    """``(test, setup_code)`` pairs of a ``def check(candidate)`` suite.

    The checker's parameter is renamed to the entry point; every statement of the checker's body
    that contains an assert becomes one test (a loop over generated inputs is one multi-line
    test); the suite's other statements (helpers and imports at module level, assignments inside
    the checker; ``METADATA`` is dropped) are the setup of the tests after them, in order.
    Raises ValueError for a suite without exactly one ``check`` function taking an argument.
    """
    module = ast.parse(test_code)
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or not checks[0].args.args:
        raise ValueError("expected exactly one `def check(candidate)`")
    check = checks[0]
    rename = _Rename(check.args.args[0].arg, entry_point)
    context = [n for n in module.body if n is not check and not _is_metadata(n) and not _is_check_call(n)]
    pairs = []
    for node in check.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        node = rename.visit(node)
        if _has_assert(node):
            pairs.append((ast.unparse(node), "\n".join(ast.unparse(n) for n in context)))
        else:
            context.append(node)
    return pairs


def split_check_suite(test_code: str, entry_point: str) -> List[str]:
    """Self-contained test statements of a ``def check(fn): assert ...`` suite.

    One ``assert`` per item when no test needs setup (the common case); otherwise the whole
    suite as one statement block that ends by calling ``check(entry_point)``, because a
    RepairTask's tests share one setup and must each run on their own.
    """
    try:
        pairs = split_check_suite_with_setup(test_code, entry_point)
    except ValueError:
        pairs = []
    if pairs and all(not setup for _, setup in pairs) and all(t.startswith("assert ") for t, _ in pairs):
        return [test for test, _ in pairs]
    module = ast.parse(test_code)
    suite = test_code.strip()
    if not any(_is_check_call(n) for n in module.body):
        suite += f"\ncheck({entry_point})"
    return [suite]


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


def read_humanevalfix(path: str) -> Iterator[RepairTask]:
    """Reads ``humanevalpack.jsonl`` (Python) and yields one RepairTask per problem."""
    for where, obj in read_json_lines(path):
        yield task_from_record(obj, where)
