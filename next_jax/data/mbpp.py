"""MBPP (Austin et al. 2021) problems as RepairTask material: spec, reference solution, tests.

Two published files are read (CC BY 4.0, google-research/google-research ``mbpp/``; also the
Hugging Face dataset ``google-research-datasets/mbpp``):

  * ``mbpp.jsonl``: 974 problems, fields ``text, code, task_id, test_setup_code, test_list,
    challenge_test_list``. ``test_setup_code`` becomes the task's ``setup_code``; the three
    ``test_list`` asserts are the shown tests and the ``challenge_test_list`` asserts (11
    problems) are added to ``eval_tests``.
  * ``sanitized-mbpp.json``: 427 hand-checked problems, one JSON array, fields ``prompt, code,
    task_id, test_imports, test_list``; ``test_imports`` becomes the ``setup_code``.

Like HumanEval, ``buggy_code`` is still the correct solution (``reference_fix`` the same); the
MBPP-R builder replaces it with a model's or the injector's buggy program. MBPP names no entry
point, so it is the function the first test calls that the code defines.

The upstream split by task id: 1-10 few-shot prompts, 11-510 test, 511-600 validation,
601-974 train (:func:`upstream_split`).
"""

from __future__ import annotations

import ast
import json
from typing import Any, Callable, Iterator, List, Optional

from next_jax import io as nj_io
from next_jax.data.records import RecordError, RepairTask, parse_rows, read_json_lines

SOURCE = "mbpp"


def upstream_split(problem_id: int) -> str:
    """MBPP's own split of a task id: 'prompt', 'test', 'validation' or 'train'."""
    if problem_id <= 10:
        return "prompt"
    if problem_id <= 510:
        return "test"
    if problem_id <= 600:
        return "validation"
    return "train"


def entry_point_of(code: str, tests: List[str]) -> str:
    """The function the tests call that ``code`` defines at module level ('' if none)."""
    defined = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    for test in tests:
        try:
            tree = ast.parse(test)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
                return node.func.id
    return defined[-1] if defined else ""


def _str_list(obj: dict, field: str, where: str) -> List[str]:
    value = obj.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError("expected a list of strings", where=where, field=field)
    return [v.replace("\r\n", "\n") for v in value]


def _task(where: str, problem_id: Any, description: Any, code: Any, tests: List[str],
          extra_tests: List[str], setup_code: str, source: str) -> RepairTask:
    if isinstance(problem_id, bool) or not isinstance(problem_id, int):
        raise RecordError(f"expected an integer, got {problem_id!r}", where=where, field="task_id")
    for field, value in (("text", description), ("code", code)):
        if not isinstance(value, str):
            raise RecordError(f"expected a string, got {type(value).__name__}", where=where, field=field)
    if not tests:
        raise RecordError("no tests", where=where, field="test_list")
    code = code.replace("\r\n", "\n").rstrip() + "\n"
    try:
        entry = entry_point_of(code, tests)
    except SyntaxError as e:
        raise RecordError(f"code does not parse: {e}", where=where, field="code") from None
    for i, test in enumerate(tests + extra_tests):
        try:
            ast.parse(test)
        except SyntaxError as e:
            raise RecordError(f"test does not parse: {e}", where=where, field=f"tests[{i}]") from None
    return RepairTask(
        task_id=f"{source}/{problem_id}", source=source, description=description.strip(),
        buggy_code=code, entry_point=entry, tests=tests, eval_tests=tests + extra_tests,
        setup_code=setup_code, reference_fix=code,
        meta={"problem_id": problem_id, "mbpp_split": upstream_split(problem_id)})


def task_from_record(obj: Any, where: str = "") -> RepairTask:
    """One ``mbpp.jsonl`` row -> RepairTask."""
    if not isinstance(obj, dict):
        raise RecordError("expected a JSON object", where=where)
    for field in ("text", "code", "task_id", "test_list"):
        if field not in obj:
            raise RecordError("missing field of an MBPP record", where=where, field=field)
    setup = obj.get("test_setup_code", "") or ""
    if not isinstance(setup, str):
        raise RecordError("expected a string", where=where, field="test_setup_code")
    return _task(where, obj["task_id"], obj["text"], obj["code"], _str_list(obj, "test_list", where),
                 _str_list(obj, "challenge_test_list", where), setup.replace("\r\n", "\n"), SOURCE)


def sanitized_task_from_record(obj: Any, where: str = "") -> RepairTask:
    """One ``sanitized-mbpp.json`` item -> RepairTask."""
    if not isinstance(obj, dict):
        raise RecordError("expected a JSON object", where=where)
    for field in ("prompt", "code", "task_id", "test_list"):
        if field not in obj:
            raise RecordError("missing field of a sanitized MBPP record", where=where, field=field)
    imports = _str_list(obj, "test_imports", where)
    return _task(where, obj["task_id"], obj["prompt"], obj["code"], _str_list(obj, "test_list", where),
                 [], "\n".join(imports), SOURCE)


def _json_array_rows(path: str, on_error) -> Iterator[tuple]:
    try:
        items = json.loads(nj_io.read_text(path))
    except json.JSONDecodeError as e:
        raise RecordError(f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})",
                          where=f"{path}:{e.lineno}") from None
    if not isinstance(items, list):
        raise RecordError("expected a JSON array of problems", where=path)
    for i, item in enumerate(items):
        yield f"{path}: item {i}", item


def read_mbpp(path: str, on_error: Optional[Callable[[RecordError], None]] = None) -> Iterator[RepairTask]:
    """Reads ``mbpp.jsonl`` (JSON Lines) or ``sanitized-mbpp.json`` (one array), by extension.

    A malformed row raises a RecordError naming the file, line (or array item) and field, or
    goes to ``on_error`` and is skipped.
    """
    if path.endswith(".json"):
        return parse_rows(_json_array_rows(path, on_error), sanitized_task_from_record, on_error)
    return parse_rows(read_json_lines(path, on_error), task_from_record, on_error)
