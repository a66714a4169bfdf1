"""Check suites (``def check(candidate): assert ...``) as single test statements.

HumanEval, HumanEvalFix and EvalPlus ship their tests as one ``check`` function called on the
entry point. NExT shows and traces single assert statements, so a suite is split into one
statement per assert with the checker's parameter renamed to the entry point. A suite that is more
than a list of asserts (loops, helpers, imports) is kept whole as one test, which the executor
runs as a statement block. Every reader of such suites and the tracer's real-data sweep use this
one splitter.
"""

from __future__ import annotations

import ast
from typing import List, Tuple


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
