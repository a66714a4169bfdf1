"""EvalPlus's HumanEval+ and MBPP+ as assert statements with the canonical solution's outputs.

EvalPlus publishes inputs only (``base_input`` + ``plus_input``; Apache-2.0, from the release
repositories ``evalplus/humanevalplus_release`` and ``evalplus/mbppplus_release``). Its harness
computes each expected output by running the canonical solution, so this module does the same, in
the sandbox (:func:`expected_outputs`), and writes every input as one test of the usual kind,
``assert f(ARGS) == EXPECTED``, which the checker decides from plain values:

  * a float result (or a list/tuple of floats) is compared within the file's ``atol`` (1e-6
    where the file says 0, as EvalPlus does for floats) plus a relative 1e-7;
  * HumanEval/32 (``find_zero``) is judged by the polynomial's value at the returned root;
  * MBPP+ problems whose answer is a set written as a list compare as sets; those whose answer
    is a regex match compare only ``is not None``.

JSON has no tuples, so an MBPP+ input is given the container shape of the problem's own example
call (its ``assertion``): a list where the example has a tuple becomes a tuple, at every depth.
An input on which the canonical solution raises, times out, or returns something that is not
plain data (or a NaN) is dropped and counted: it cannot say what a correct program returns.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from next_jax.data.records import RecordError, parse_rows, read_json_lines

TARGET = "next_jax.data.evalplus:canonical_outputs"
FLOAT_ATOL = 1e-6
REL_TOL = 1e-7
MAX_TEST_CHARS = 2000
# MBPP+ problems (by entry point) whose expected list is compared as a set, and whose canonical
# solution returns a regex match (compared as "is not None").
SET_EQ_ENTRY_POINTS = frozenset({"similar_elements", "find_char_long", "common_in_nested_lists",
                                 "extract_singly", "larg_nnum", "intersection_array",
                                 "find_dissimilar", "Diff"})
NOT_NONE_ENTRY_POINTS = frozenset({"check_str", "text_match_three", "text_starta_endb"})


@dataclasses.dataclass(frozen=True)
class PlusProblem:
    """One EvalPlus problem: the canonical program, the inputs and the float tolerance."""

    task_id: str          # 'HumanEval/0' or 'Mbpp/2'
    entry_point: str
    program: str          # code that defines entry_point correctly
    inputs: list          # base inputs first, then plus inputs; each a list of arguments
    atol: float
    num_base: int
    prompt: str = ""
    example: str = ""     # MBPP+: the problem's own asserts

    @property
    def number(self) -> int:
        return int(self.task_id.rsplit("/", 1)[-1])


def problem_from_record(obj: Any, where: str = "", *, plus: bool = True) -> PlusProblem:
    """One HumanEval+ / MBPP+ record -> PlusProblem (``plus=False``: base inputs only)."""
    if not isinstance(obj, dict):
        raise RecordError("expected a JSON object", where=where)
    for field in ("task_id", "entry_point", "canonical_solution", "base_input", "plus_input"):
        if field not in obj:
            raise RecordError("missing field of an EvalPlus record", where=where, field=field)
    for field in ("base_input", "plus_input"):
        if obj[field] == {}:  # one MBPP+ row (Mbpp/793) writes "no plus inputs" as an empty object
            obj = dict(obj, **{field: []})
        if not isinstance(obj[field], list) or not all(isinstance(i, list) for i in obj[field]):
            raise RecordError("expected a list of argument lists", where=where, field=field)
    atol = obj.get("atol", 0) or 0
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or atol < 0:
        raise RecordError(f"expected a non-negative number, got {atol!r}", where=where, field="atol")
    task_id = str(obj["task_id"])
    example = obj.get("assertion", "") or ""
    if task_id.startswith("HumanEval/"):
        program = obj.get("prompt", "") + obj["canonical_solution"]
    else:
        program = obj["canonical_solution"]
    try:
        ast.parse(program)
    except SyntaxError as e:
        raise RecordError(f"canonical solution does not parse: {e}", where=where,
                          field="canonical_solution") from None
    inputs = obj["base_input"] + (obj["plus_input"] if plus else [])
    if example:
        shapes = example_shapes(example, obj["entry_point"])
        if shapes is not None:
            inputs = [conform(args, shapes) for args in inputs]
    return PlusProblem(task_id=task_id, entry_point=obj["entry_point"], program=program,
                       inputs=inputs, atol=float(atol), num_base=len(obj["base_input"]),
                       prompt=obj.get("prompt", ""), example=example)


def read_evalplus(path: str, *, plus: bool = True,
                  on_error: Optional[Callable[[RecordError], None]] = None) -> Iterator[PlusProblem]:
    """Reads ``HumanEvalPlus*.jsonl.gz`` or ``MbppPlus*.jsonl.gz``; one PlusProblem per row."""
    parse = lambda obj, where: problem_from_record(obj, where, plus=plus)  # noqa: E731
    yield from parse_rows(read_json_lines(path, on_error), parse, on_error)


# ----------------------------------------------------------------------------------------------
# Argument shapes from an example call.


def _shape(node: ast.AST):
    """The container skeleton of a literal: ('tuple'|'list'|'set', element shape) or None."""
    kinds = {ast.Tuple: "tuple", ast.List: "list", ast.Set: "set"}
    kind = kinds.get(type(node))
    if kind is None:
        return None
    return kind, (_shape(node.elts[0]) if node.elts else None)


def example_shapes(example: str, entry_point: str) -> Optional[list]:
    """Per-argument shapes of the first call to ``entry_point`` in ``example`` (None if none)."""
    try:
        tree = ast.parse(example)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == entry_point and not node.keywords):
            return [_shape(a) for a in node.args]
    return None


def _conform_value(value: Any, shape) -> Any:
    if shape is None or not isinstance(value, list):
        return value
    kind, inner = shape
    items = [_conform_value(v, inner) for v in value]
    if kind == "tuple":
        return tuple(items)
    if kind == "set":
        try:
            return set(items)
        except TypeError:
            return items
    return items


def conform(args: list, shapes: Sequence) -> list:
    """Gives JSON arguments the container types of the example call, position by position."""
    if len(shapes) != len(args):
        return args
    return [_conform_value(a, s) for a, s in zip(args, shapes)]


# ----------------------------------------------------------------------------------------------
# Inside the sandboxed child: the canonical solution's outputs.

_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _is_plain(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    t = type(value)
    if t in _PLAIN:
        return True
    if t in (list, tuple, set, frozenset):
        return all(_is_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def canonical_outputs(payload: dict):
    """Runs the canonical program on each input; emits ``(index, status, value)`` per input.

    status: 'ok' (value: the output), 'not_none' (value: whether the output is not None, for
    answers that are not plain data by nature), 'slow' (value: seconds; the call took longer
    than ``slow_s``), 'unplain' or 'error' (value: a short reason).
    Streaming per input keeps the outputs computed before a hang.
    """
    import time

    from next_jax.execution.channel import emit  # here: runs in the sandbox child, which stays small

    namespace: Dict[str, Any] = {"__name__": "__main__"}
    exec(compile(payload["program"], "<canonical>", "exec"), namespace)  # noqa: S102
    fn = namespace[payload["entry_point"]]
    not_none = payload.get("not_none", False)
    slow_s = payload.get("slow_s")
    for index, args in zip(payload["indices"], payload["inputs"]):
        start = time.perf_counter()
        try:
            out = fn(*copy.deepcopy(args))
        except Exception as e:  # noqa: BLE001 - the input is reported, not the run aborted
            emit((index, "error", f"{type(e).__name__}: {e}"[:200]))
            continue
        seconds = time.perf_counter() - start
        if slow_s is not None and seconds > slow_s:
            emit((index, "slow", round(seconds, 3)))
        elif not_none and not isinstance(out, bool):
            emit((index, "not_none", out is not None))
        elif _is_plain(out):
            emit((index, "ok", out))
        else:
            emit((index, "unplain", type(out).__name__))


def expected_outputs(problem: PlusProblem, pool, *, timeout_per_input_s: float = 5.0,
                     slow_s: Optional[float] = None, memory_bytes: int = 2 << 30) -> List[tuple]:
    """``(status, value)`` for every input of ``problem``, computed in the sandbox.

    With ``slow_s``, an input on which the canonical solution itself runs longer than that is
    marked 'slow': a correct fix could not be told from a hanging one on it within a test
    timeout of a few times ``slow_s`` (EvalPlus scales its time limits by the ground truth's).

    A run that stops early (time, memory, crash) marks the input it was on as 'timeout' (or
    'error') and the rest are run again from the next input, so one slow input costs its own
    timeout and no others.
    """
    from next_jax.execution.sandbox import Limits  # deferred: sandbox workers import this module

    results: Dict[int, tuple] = {}
    todo = list(range(len(problem.inputs)))
    not_none = problem.entry_point in NOT_NONE_ENTRY_POINTS and problem.task_id.startswith("Mbpp/")
    while todo:
        budget = timeout_per_input_s * len(todo) + 5.0
        limits = Limits(timeout_s=budget, cpu_s=budget, memory_bytes=memory_bytes)
        payload = {"program": problem.program, "entry_point": problem.entry_point,
                   "indices": todo, "inputs": [problem.inputs[i] for i in todo],
                   "not_none": not_none, "slow_s": slow_s}
        result = pool.run(TARGET, payload, limits)
        for message in result.messages:
            if isinstance(message, tuple) and len(message) == 3:
                results[message[0]] = (message[1], message[2])
        todo = [i for i in todo if i not in results]
        if todo:
            if result.status == "ok":
                # The target returned without reaching these inputs: it cannot happen unless
                # the program broke the loop, so every remaining input is unjudgeable.
                for i in todo:
                    results[i] = ("error", "not run")
                break
            status = "timeout" if result.status == "timeout" else "error"
            if not result.messages:
                why = result.detail.strip().rsplit("\n", 1)[-1][:200]
                if result.status == "error" and "Traceback" in result.detail and len(todo) == len(problem.inputs):
                    # The program itself fails to load: nothing can be computed.
                    return [("error", why)] * len(problem.inputs)
            results[todo[0]] = (status, result.detail.strip().rsplit("\n", 1)[-1][:200])
            todo = todo[1:]
    return [results[i] for i in range(len(problem.inputs))]


# ----------------------------------------------------------------------------------------------
# Assert statements.


def literal(value: Any) -> str:
    """Python source for a plain value that evaluates back to an equal value.

    Raises ValueError for a NaN (no equality) or an int too long to print.
    """
    t = type(value)
    if t is float:
        if math.isnan(value):
            raise ValueError("NaN has no equal value")
        if math.isinf(value):
            return "float('inf')" if value > 0 else "float('-inf')"
        return repr(value)
    if t is complex:
        return f"complex({literal(value.real)}, {literal(value.imag)})"
    if t in (type(None), bool, int, str, bytes):
        return repr(value)
    if t is list:
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if t is tuple:
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if t is dict:
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if t in (set, frozenset):
        items = sorted((literal(v) for v in value))
        body = "{" + ", ".join(items) + "}" if items else ""
        return f"{t.__name__}({body})" if t is frozenset or not items else body
    raise ValueError(f"not plain data: {t.__name__}")


def _is_floats(value: Any) -> bool:
    if type(value) is float:
        return True
    return (type(value) in (list, tuple) and len(value) > 0
            and all(type(v) is float for v in value))


def _close(expr: str, expected, atol: float) -> str:
    """``|expr - expected| <= atol + REL_TOL * |expected|`` with the bound as one literal.

    Builtins only (no ``math``): a test must not depend on what the program imports.
    """
    if not math.isfinite(expected):
        return f"{expr} == {literal(expected)}"
    bound = atol + REL_TOL * abs(expected)
    return f"abs({expr} - {literal(expected)}) <= {bound!r}"


def assert_for(problem: PlusProblem, args: list, status: str, expected: Any) -> str:
    """The test statement for one input whose canonical output is ``expected``."""
    call = f"{problem.entry_point}({', '.join(literal(a) for a in args)})"
    if problem.task_id == "HumanEval/32":
        tol = problem.atol or FLOAT_ATOL
        return f"assert abs(poly({literal(args[0])}, {call})) <= {tol!r}"
    if status == "not_none":
        return f"assert ({call} is not None) == {expected!r}"
    if problem.task_id.startswith("Mbpp/") and problem.entry_point in SET_EQ_ENTRY_POINTS:
        return f"assert set({call}) == set({literal(expected)})"
    if _is_floats(expected):
        tol = problem.atol or FLOAT_ATOL
        if type(expected) is float:
            return f"assert {_close(call, expected, tol)}"
        lines = [f"out = {call}", f"assert len(out) == {len(expected)}"]
        lines += [f"assert {_close(f'out[{i}]', v, tol)}" for i, v in enumerate(expected)]
        return "\n".join(lines)
    if problem.atol and type(expected) is int:
        return f"assert {_close(call, expected, problem.atol)}"
    return f"assert {call} == {literal(expected)}"


def eval_tests(problem: PlusProblem, outputs: Sequence[tuple], counts: Optional[dict] = None,
               *, max_test_chars: Optional[int] = MAX_TEST_CHARS) -> List[str]:
    """One assert per input with a usable expected output; ``counts`` tallies what was dropped.

    A test longer than ``max_test_chars`` (an extreme input or output, e.g. a 10^5-item list)
    is dropped as ``too_long``: a few hundred of HumanEval+'s 124k inputs make up most of its
    bytes, and every task record carries its tests.
    """
    tests = []
    for args, (status, value) in zip(problem.inputs, outputs):
        reason = None
        if status not in ("ok", "not_none"):
            reason = f"canonical_{status}"
        else:
            try:
                test = assert_for(problem, args, status, value)
            except (ValueError, RecursionError):
                reason = "not_expressible"
            else:
                if max_test_chars and len(test) > max_test_chars:
                    reason = "too_long"
                else:
                    tests.append(test)
        if reason and counts is not None:
            counts[reason] = counts.get(reason, 0) + 1
    return tests
