"""Buggy programs from correct ones by small semantic mutations, kept only if a test catches them.

NExT's MBPP-R used an LLM to write buggy programs; where no such model is at hand, single-site
mutations of a reference solution give the same kind of task: a program close to a correct one,
wrong on at least one test. Each mutation edits the source text at one AST node's position (so
the program keeps its formatting and comments):

  * arithmetic operator swaps (``+``/``-``, ``*``/``+``, ``//``/``/``, ``%``/``//``),
  * comparison swaps (``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``in``/``not in``),
  * integer constants off by one, ``True``/``False`` swapped,
  * ``and``/``or`` swapped, a ``not`` dropped.

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


def _sites(code: str, function_name: Optional[str]) -> Iterator[Tuple[int, int, str, str, int]]:
    """(start, end, old text, new text, line) of every single-site mutation."""
    tree = ast.parse(code)
    starts = _offsets(code)
    data = code.encode("utf-8")
    scope = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function_name]
    roots = scope or [tree]
    tokens = _operator_tokens(code)
    seen = set()
    for root in roots:
        for node in ast.walk(root):
            gaps = []
            if isinstance(node, ast.BinOp):
                gaps = [(node.left, node.right, _BINOP_SWAPS)]
            elif isinstance(node, ast.Compare):
                operands = [node.left] + node.comparators
                gaps = [(a, b, _CMP_SWAPS) for a, b in zip(operands, operands[1:])]
            elif isinstance(node, ast.BoolOp):
                gaps = [(a, b, _BOOL_SWAPS) for a, b in zip(node.values, node.values[1:])]
            for left, right, swaps in gaps:
                lo = _node_span(left, starts)[1]
                hi = _node_span(right, starts)[0]
                for b, e, s, line in tokens:
                    if lo <= b and e <= hi and s in swaps and (b, e) not in seen:
                        seen.add((b, e))
                        yield b, e, s, swaps[s], line
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                b, _ = _node_span(node, starts)
                ob, _ = _node_span(node.operand, starts)
                yield b, ob, data[b:ob].decode(), "", node.lineno
            if isinstance(node, ast.Constant) and type(node.value) in (int, bool):
                b, e = _node_span(node, starts)
                old = data[b:e].decode()
                if type(node.value) is bool:
                    yield b, e, old, str(not node.value), node.lineno
                elif old.isdigit():
                    yield b, e, old, str(node.value + 1), node.lineno
                    if node.value > 0:
                        yield b, e, old, str(node.value - 1), node.lineno


def candidate_mutants(code: str, function_name: Optional[str] = None, seed: int = 0) -> List[Mutant]:
    """Every single-site mutant of ``function_name`` (or the whole module), in a seeded order."""
    data = code.encode("utf-8")
    mutants = []
    for b, e, old, new, line in _sites(code, function_name):
        mutated = (data[:b] + new.encode() + data[e:]).decode("utf-8")
        try:
            ast.parse(mutated)
        except SyntaxError:
            continue
        if mutated != code:
            mutants.append(Mutant(mutated, f"line {line}: {old!r} -> {new!r}"))
    random.Random(seed).shuffle(mutants)
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
                meta = dict(t.meta, bug=mutant.description, bug_source="mutation")
                yield dataclasses.replace(t, buggy_code=mutant.code, meta=meta)
                break
