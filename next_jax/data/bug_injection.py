"""Buggy programs from correct ones by small semantic mutations, kept only if a test catches them.

NExT's MBPP-R used an LLM to write buggy programs; where no such model is at hand, single-site
mutations of a reference solution give the same kind of task: a program close to a correct one,
wrong on at least one test. Each mutation edits the source text at one AST node's position (so
the program keeps its formatting and comments). The operators (``Mutant.operator``, recorded in
a task's ``meta['bug_operator']``):

  * ``arithmetic_swap`` (``+``/``-``, ``*``/``+``, ``//``/``/``, ``%``/``//``),
  * ``comparison_swap`` (``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``in``/``not in``),
  * ``logic_swap`` (``and``/``or``), ``flipped_condition`` (``if c`` -> ``if not (c)``, or a
    ``not`` dropped),
  * ``off_by_one`` in ``range(...)`` arguments and subscripts/slices (``n`` -> ``n + 1``, ``3``
    -> ``2``), ``constant_change`` for other integer constants and ``True``/``False``,
  * ``wrong_variable`` (a local name read in place of another), ``wrong_builtin`` (``min``/
    ``max``, ``any``/``all``, ``sum``/``len``, ``.lower``/``.upper``, ...),
  * ``wrong_return`` (``return a + b`` -> ``return a``, ``return x`` -> ``return None``),
  * ``dropped_statement`` (an assignment or call statement removed from a block).

:func:`candidate_mutants` lists mutants in a seeded order; :func:`inject_bugs` runs them through
the sandboxed checker and keeps, per task, the first whose program fails a test (and whose
reference passes them all), so every task is a real repair problem.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import random
import tokenize
import zlib
from typing import Iterable, Iterator, List, Optional, Tuple

from next_jax.data.records import RepairTask, Sample

_BINOP_SWAPS = {"+": "-", "-": "+", "*": "+", "//": "/", "/": "//", "%": "//"}
_CMP_SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "in": "not in",
              "not in": "in"}
_BOOL_SWAPS = {"and": "or", "or": "and"}


@dataclasses.dataclass(frozen=True)
class Mutant:
    code: str
    description: str  # e.g. "line 5: '<' -> '<='"
    operator: str = ""  # one of OPERATORS


def _offsets(code: str) -> List[int]:
    starts, total = [], 0
    for line in code.splitlines(keepends=True):
        starts.append(total)
        total += len(line.encode("utf-8"))
    return starts


def _operator_tokens(code: str) -> List[Tuple[int, int, str]]:
    """(start byte, end byte, text) of every operator/keyword token, with ``not in`` joined."""
    starts = _offsets(code)
    out = []
    toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    for i, tok in enumerate(toks):
        if tok.type == tokenize.OP or (tok.type == tokenize.NAME and tok.string in ("and", "or", "not", "in", "True", "False")):
            begin = starts[tok.start[0] - 1] + len(tok.line[: tok.start[1]].encode("utf-8"))
            end = starts[tok.end[0] - 1] + len(tok.line[: tok.end[1]].encode("utf-8"))
            out.append((begin, end, tok.string, tok.start[0]))
    joined = []
    for j, (b, e, s, line) in enumerate(out):
        if s == "not" and j + 1 < len(out) and out[j + 1][2] == "in" and out[j + 1][3] == line:
            joined.append((b, out[j + 1][1], "not in", line))
        elif s == "in" and joined and joined[-1][2] == "not in" and joined[-1][1] == e:
            continue
        else:
            joined.append((b, e, s, line))
    return joined


def _node_span(node: ast.AST, starts: List[int]) -> Tuple[int, int]:
    return (starts[node.lineno - 1] + node.col_offset, starts[node.end_lineno - 1] + node.end_col_offset)


OPERATORS = ("comparison_swap", "arithmetic_swap", "logic_swap", "flipped_condition",
             "off_by_one", "constant_change", "wrong_variable", "dropped_statement",
             "wrong_return", "wrong_builtin")
_BUILTIN_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any", "sum": "len",
                  "len": "sum", "sorted": "reversed", "reversed": "sorted", "abs": "int",
                  "round": "int", "int": "round", "set": "list", "list": "set"}
_METHOD_SWAPS = {"lower": "upper", "upper": "lower", "startswith": "endswith",
                 "endswith": "startswith", "append": "extend", "find": "rfind", "rfind": "find",
                 "index": "count", "count": "index", "isupper": "islower", "islower": "isupper",
                 "lstrip": "rstrip", "rstrip": "lstrip", "pop": "copy", "keys": "values",
                 "values": "keys", "split": "rsplit", "isdigit": "isalpha", "isalpha": "isdigit"}


def _local_names(fn: ast.AST) -> List[str]:
    """Parameters and names a function (or module) assigns, in order of first appearance."""
    names: List[str] = []
    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names += [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in names:
            names.append(node.id)
    return names


def _in_range_or_slice(node: ast.AST, parents: dict) -> bool:
    parent = parents.get(node)
    if isinstance(parent, ast.Slice):
        return True
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    if isinstance(parent, ast.UnaryOp):  # x[-1], range(n, -1, -1)
        return _in_range_or_slice(parent, parents)
    return (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
            and parent.func.id == "range" and node in parent.args)


def _whole_lines(node: ast.stmt, lines: List[str]) -> bool:
    """True if the statement alone fills its lines (no ``a = 1; b = 2``), so they can go."""
    first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
    before = first.encode("utf-8")[: node.col_offset].decode("utf-8", "replace")
    after = last.encode("utf-8")[node.end_col_offset:].decode("utf-8", "replace").strip()
    return not before.strip() and (not after or after.startswith("#"))


def _sites(code: str, function_name: Optional[str]) -> Iterator[Tuple[int, int, str, str, int, str]]:
    """(start, end, old text, new text, line, operator) of every single-site mutation."""
    tree = ast.parse(code)
    starts = _offsets(code)
    data = code.encode("utf-8")
    lines = code.splitlines(keepends=True)
    scope = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function_name]
    roots = scope or [tree]
    tokens = _operator_tokens(code)
    seen = set()

    def text(node):
        b, e = _node_span(node, starts)
        return b, e, data[b:e].decode("utf-8")

    for root in roots:
        parents = {child: node for node in ast.walk(root) for child in ast.iter_child_nodes(node)}
        local = _local_names(root)
        for node in ast.walk(root):
            gaps = []
            if isinstance(node, ast.BinOp):
                gaps = [(node.left, node.right, _BINOP_SWAPS, "arithmetic_swap")]
            elif isinstance(node, ast.Compare):
                operands = [node.left] + node.comparators
                gaps = [(a, b, _CMP_SWAPS, "comparison_swap") for a, b in zip(operands, operands[1:])]
            elif isinstance(node, ast.BoolOp):
                gaps = [(a, b, _BOOL_SWAPS, "logic_swap") for a, b in zip(node.values, node.values[1:])]
            for left, right, swaps, op in gaps:
                lo = _node_span(left, starts)[1]
                hi = _node_span(right, starts)[0]
                for b, e, s, line in tokens:
                    if lo <= b and e <= hi and s in swaps and (b, e) not in seen:
                        seen.add((b, e))
                        yield b, e, s, swaps[s], line, op
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                b, _ = _node_span(node, starts)
                ob, _ = _node_span(node.operand, starts)
                yield b, ob, data[b:ob].decode(), "", node.lineno, "flipped_condition"
            if isinstance(node, (ast.If, ast.While, ast.IfExp)) and not (
                    isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)):
                b, e, old = text(node.test)
                yield b, e, old, f"not ({old})", node.test.lineno, "flipped_condition"
            if isinstance(node, ast.Constant) and type(node.value) in (int, bool):
                b, e, old = text(node)
                if type(node.value) is bool:
                    yield b, e, old, str(not node.value), node.lineno, "constant_change"
                elif old.isdigit():
                    op = "off_by_one" if _in_range_or_slice(node, parents) else "constant_change"
                    yield b, e, old, str(node.value + 1), node.lineno, op
                    if node.value > 0:
                        yield b, e, old, str(node.value - 1), node.lineno, op
            elif (isinstance(node, (ast.Name, ast.BinOp, ast.Call, ast.Attribute))
                  and _in_range_or_slice(node, parents)):
                b, e, old = text(node)
                for delta in (" + 1", " - 1"):
                    yield b, e, old, f"({old}{delta})", node.lineno, "off_by_one"
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in local:
                b, e, old = text(node)
                others = [n for n in local if n != node.id]
                if others:
                    yield b, e, old, others[zlib.crc32(f"{b}".encode()) % len(others)], node.lineno, "wrong_variable"
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in _BUILTIN_SWAPS and func.id not in local:
                    b, e, old = text(func)
                    yield b, e, old, _BUILTIN_SWAPS[func.id], node.lineno, "wrong_builtin"
                elif isinstance(func, ast.Attribute) and func.attr in _METHOD_SWAPS:
                    _, e = _node_span(func, starts)
                    b = e - len(func.attr.encode())
                    yield b, e, func.attr, _METHOD_SWAPS[func.attr], node.lineno, "wrong_builtin"
            if isinstance(node, ast.Return) and node.value is not None:
                value = node.value
                b, e, old = text(value)
                if isinstance(value, ast.BinOp):
                    for part in (value.left, value.right):
                        yield b, e, old, text(part)[2], node.lineno, "wrong_return"
                elif isinstance(value, ast.Call) and value.args:
                    yield b, e, old, text(value.args[0])[2], node.lineno, "wrong_return"
                elif isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) > 1:
                    yield b, e, old, text(value.elts[0])[2], node.lineno, "wrong_return"
                elif isinstance(value, ast.Name):
                    others = [n for n in local if n != value.id]
                    if others:
                        yield b, e, old, others[0], node.lineno, "wrong_return"
                    yield b, e, old, "None", node.lineno, "wrong_return"
            body = getattr(node, "body", None)
            if isinstance(body, list) and len(body) > 1 and not isinstance(node, ast.Module):
                for stmt in body:
                    if (isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr, ast.AnnAssign))
                            and not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
                            and _whole_lines(stmt, lines)):
                        b = starts[stmt.lineno - 1]
                        e = starts[stmt.end_lineno - 1] + len(lines[stmt.end_lineno - 1].encode("utf-8"))
                        old = data[b:e].decode("utf-8")
                        yield b, e, old.strip(), "", stmt.lineno, "dropped_statement"


def candidate_mutants(code: str, function_name: Optional[str] = None, seed: int = 0,
                      operators: Optional[Iterable[str]] = None) -> List[Mutant]:
    """Every distinct single-site mutant of ``function_name`` (or the module), in a seeded order.

    The order interleaves the operators (one of each kind in a seeded order, then the next of
    each, ...), so the first few mutants of a program are of different kinds.
    """
    wanted = set(operators) if operators is not None else set(OPERATORS)
    unknown = wanted - set(OPERATORS)
    if unknown:
        raise ValueError(f"unknown mutation operators {sorted(unknown)} (known: {list(OPERATORS)})")
    data = code.encode("utf-8")
    by_operator = {}
    seen = {code}
    for b, e, old, new, line, op in _sites(code, function_name):
        if op not in wanted:
            continue
        mutated = (data[:b] + new.encode() + data[e:]).decode("utf-8")
        if mutated in seen:
            continue
        try:
            ast.parse(mutated)
        except SyntaxError:
            continue
        seen.add(mutated)
        shown = old if len(old) <= 60 else old[:57] + "..."
        by_operator.setdefault(op, []).append(Mutant(mutated, f"line {line}: {shown!r} -> {new!r}", op))
    rng = random.Random(seed)
    groups = [by_operator[op] for op in OPERATORS if op in by_operator]
    for group in groups:
        rng.shuffle(group)
    rng.shuffle(groups)
    mutants = []
    for i in range(max((len(g) for g in groups), default=0)):
        mutants += [g[i] for g in groups if i < len(g)]
    return mutants


def inject_bugs(tasks: Iterable[RepairTask], checker, *, seed: int = 0, max_tries: int = 8) -> Iterator[RepairTask]:
    """Yields, per task with a passing reference, one task whose buggy_code fails a shown test.

    The reference and up to ``max_tries`` mutants are checked in one batch per task. A mutant counts
    only if it fails or raises on the tests shown in the prompt (a timeout does not count: its
    trace would show no answer), so the trace of at least one test shows the bug. Tasks with no
    such mutant are skipped.
    """
    tasks = [t for t in tasks if t.reference_fix]
    by_id = {t.task_id: t for t in tasks}
    candidates = {}
    samples = []
    for t in tasks:
        mutants = candidate_mutants(t.reference_fix, t.entry_point, seed=zlib.crc32(f"{seed}/{t.task_id}".encode()))[:max_tries]
        candidates[t.task_id] = mutants
        samples.append(Sample(task_id=t.task_id, iteration=0, sample_id=f"{t.task_id}/reference",
                              prompt_variant="no_trace", text="", rationale="", fix=t.reference_fix))
        samples += [Sample(task_id=t.task_id, iteration=0, sample_id=f"{t.task_id}/mutant/{i}",
                           prompt_variant="no_trace", text="", rationale="", fix=m.code)
                    for i, m in enumerate(mutants)]
    verdicts = {v.sample_id: v for v in checker.check(by_id, samples)}
    for t in tasks:
        if verdicts[f"{t.task_id}/reference"].status != "pass":
            continue
        for i, mutant in enumerate(candidates[t.task_id]):
            if verdicts[f"{t.task_id}/mutant/{i}"].status in ("fail", "error"):
                meta = dict(t.meta, bug=mutant.description, bug_operator=mutant.operator,
                            bug_source="mutation")
                yield dataclasses.replace(t, buggy_code=mutant.code, meta=meta)
                break
