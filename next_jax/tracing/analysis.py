"""Static facts about traced source that keep the recorder cheap.

The recorder reports, after each executed line, the variables that line created or changed. Doing
that by diffing every local on every line costs a full snapshot per line; instead this module
reads the source once and lists, for each physical line, the only names that line can change:

- names it binds or deletes (assignment targets, ``for``/``with``/``except ... as`` targets,
  walrus targets; ``import``, ``def`` and ``class`` bindings are left out because they are code,
  not program state, and so are comprehension variables, which the recorder does not show);
- names whose object it can mutate in place: the root name of an attribute or subscript being
  stored or deleted (``a.b[i] = x`` -> ``a``), of an augmented assignment, of a method call's
  receiver (``lst.append(x)`` -> ``lst``), and of a call's arguments (``f(lst)``, ``f(*lst)``,
  ``f(k=lst)``, ``f([lst])``), since the callee may mutate what it is given.

A line that calls anything may also change cell variables (closures) and globals the code
declares ``global``; the recorder adds those per code object. Values changed only through an
unnamed alias (``row = grid[0]; row[1] = 5`` changes ``grid`` too) are reported the next time a
line that can change ``grid`` runs.

It also finds where a comment may go: a line that ends inside a multi-line string or with a
backslash continuation cannot take one, so its steps move to the statement's first safe line.
"""

from __future__ import annotations

import ast
import dataclasses
import dis
import types
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

LINE_BITS = 20  # a comment key is (file index << LINE_BITS) | line


@dataclasses.dataclass(frozen=True)
class LineFacts:
    """What one physical line can change: ``names`` (in source order) and whether it calls."""

    names: Tuple[str, ...]
    has_call: bool


@dataclasses.dataclass
class SourceFacts:
    """Per-file facts: line -> LineFacts, line -> line carrying its comment, def lines."""

    lines: Dict[int, LineFacts]
    comment_line: Dict[int, int]  # only lines whose comment goes elsewhere
    entry_line: Dict[int, int]  # first line of a decorated def/class -> its def/class line
    line_count: int
    tree: ast.Module  # compiled by the recorder, so the source is parsed once
    untraceable: Tuple[str, ...] = ()  # what the source does that no trace can show


def _root_name(node: ast.AST) -> Optional[str]:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    return None


class _NameCollector(ast.NodeVisitor):
    """Collects the names an expression or simple statement can change, with positions."""

    def __init__(self):
        self.found: List[Tuple[int, int, str]] = []
        self.has_call = False

    def _add(self, node: ast.AST, name: Optional[str]) -> None:
        if name is not None:
            self.found.append((node.lineno, node.col_offset, name))

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._add(node, node.id)

    def visit_Constant(self, node: ast.Constant) -> None:
        pass  # (NodeVisitor's own visit_Constant is slow)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._add(node, _root_name(node.value))
        self.generic_visit(node)

    visit_Subscript = visit_Attribute  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        self.has_call = True
        if isinstance(node.func, ast.Attribute):
            self._add(node.func, _root_name(node.func.value))
        for arg in list(node.args) + [k.value for k in node.keywords]:
            self._argument(arg)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        # Comprehension variables live in the comprehension's own scope, which the recorder
        # treats as one atomic step (see recorder): only the iterable and conditions are scanned.
        self.visit(node.iter)
        for condition in node.ifs:
            self.visit(condition)

    def _argument(self, arg: ast.AST) -> None:
        if isinstance(arg, (ast.List, ast.Tuple, ast.Set)):
            for element in arg.elts:
                self._argument(element)
        elif isinstance(arg, ast.Dict):
            for element in list(arg.keys) + list(arg.values):
                if element is not None:
                    self._argument(element)
        else:
            self._add(arg, _root_name(arg))

    # Definitions inside an expression-level scan cannot occur; statement-level ones are
    # handled by the caller. Lambdas run on the same line, so their bodies are scanned.


def _collect(nodes: Iterable[Optional[ast.AST]]) -> Tuple[List[Tuple[int, int, str]], bool]:
    collector = _NameCollector()
    for node in nodes:
        if node is not None:
            collector.visit(node)
    return collector.found, collector.has_call


def _header(stmt: ast.stmt) -> Tuple[List[Optional[ast.AST]], int]:
    """The parts of ``stmt`` that run on its own lines, and the last line they span."""
    if isinstance(stmt, (ast.If, ast.While)):
        return [stmt.test], stmt.test.end_lineno
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.target, stmt.iter], max(stmt.iter.end_lineno, stmt.target.end_lineno)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        parts: List[Optional[ast.AST]] = []
        for item in stmt.items:
            parts += [item.context_expr, item.optional_vars]
        return parts, max(p.end_lineno for p in parts if p is not None)
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        # Decorators, defaults and bases run in the enclosing scope; the bound name is code.
        parts = list(stmt.decorator_list)
        if isinstance(stmt, ast.ClassDef):
            parts += list(stmt.bases) + [k.value for k in stmt.keywords]
        else:
            args = stmt.args
            parts += list(args.defaults) + [d for d in args.kw_defaults if d is not None]
        return parts, stmt.lineno
    if isinstance(stmt, (ast.Try,) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())):
        return [], stmt.lineno
    if isinstance(stmt, ast.Match):
        return [stmt.subject], stmt.subject.end_lineno
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)):
        return [], stmt.end_lineno
    return [stmt], stmt.end_lineno


def _pattern_names(pattern: ast.AST) -> List[Tuple[int, int, str]]:
    found = []
    for node in ast.walk(pattern):
        name = getattr(node, "name", None) if isinstance(node, (ast.MatchAs, ast.MatchStar)) else None
        if isinstance(node, ast.MatchMapping):
            name = node.rest
        if name:
            found.append((node.lineno, node.col_offset, name))
    return found


def unsafe_comment_lines(source: str, tree: Optional[ast.AST] = None) -> Set[int]:
    """Lines that end inside a string literal or with a backslash continuation.

    Read off the syntax tree (a string constant spanning lines covers all of them but its last;
    implicitly concatenated strings are treated the same way, which only moves a comment down)
    rather than the much slower tokenizer.
    """
    tree = ast.parse(source) if tree is None else tree
    unsafe: Set[int] = set()
    if '"""' in source or "'''" in source or "\\\n" in source or "\\\r\n" in source:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Constant, ast.JoinedStr)) and node.end_lineno != node.lineno \
                    and (isinstance(node, ast.JoinedStr) or isinstance(node.value, (str, bytes))):
                unsafe.update(range(node.lineno, node.end_lineno))
    if "\\" in source:
        for number, text in enumerate(source.splitlines(), start=1):
            if text.rstrip().endswith("\\"):
                unsafe.add(number)
    return unsafe


def analyze_source(source: str) -> SourceFacts:
    """Reads ``source`` (which must parse) into the per-line facts the recorder uses."""
    tree = ast.parse(source)
    unsafe = unsafe_comment_lines(source, tree)
    found_by_line: Dict[int, List[Tuple[int, int, str]]] = {}
    calls: Set[int] = set()
    comment_line: Dict[int, int] = {}
    entry_line: Dict[int, int] = {}

    def place(first: int, last: int) -> int:
        for line in range(first, last + 1):
            if line not in unsafe:
                return line
        return last

    def note(first: int, last: int, found, has_call: bool) -> None:
        target = place(first, last)
        for line in range(first, last + 1):
            found_by_line.setdefault(line, []).extend(found)
            if has_call:
                calls.add(line)
            if target != line:
                comment_line.setdefault(line, target)

    def visit_block(statements) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                entry_line[first] = place(node.lineno, node.lineno)
            parts, last = _header(node)
            found, has_call = _collect(parts)
            note(node.lineno, last, found, has_call)
            for field in ("body", "orelse", "finalbody"):
                block = getattr(node, field, None)
                if block:
                    visit_block(block)
            for handler in getattr(node, "handlers", ()):
                found, has_call = _collect([handler.type])
                if handler.name:
                    found.append((handler.lineno, handler.col_offset, handler.name))
                last = handler.type.end_lineno if handler.type is not None else handler.lineno
                note(handler.lineno, last, found, has_call)
                visit_block(handler.body)
            for case in getattr(node, "cases", ()):
                found = _pattern_names(case.pattern)
                guard_found, has_call = _collect([case.guard])
                last = case.guard.end_lineno if case.guard is not None else case.pattern.end_lineno
                note(case.pattern.lineno, last, found + guard_found, has_call)
                visit_block(case.body)

    visit_block(tree.body)

    lines: Dict[int, LineFacts] = {}
    for line, found in found_by_line.items():
        names: List[str] = []
        for _, _, name in sorted(found):
            if name not in names:
                names.append(name)
        if names or line in calls:
            lines[line] = LineFacts(tuple(names), line in calls)
    return SourceFacts(lines, comment_line, entry_line, len(source.splitlines()), tree,
                       untraceable_calls(source, tree))


_UNTRACEABLE = {
    "exec": "code run through exec/eval is not traced",
    "eval": "code run through exec/eval is not traced",
    "fork": "code run in other processes is not traced",
    "Process": "code run in other processes is not traced",
    "Pool": "code run in other processes is not traced",
    "ProcessPoolExecutor": "code run in other processes is not traced",
    "Popen": "code run in other processes is not traced",
    "system": "code run in other processes is not traced",
}


def untraceable_calls(source: str, tree: ast.AST) -> Tuple[str, ...]:
    """Marks for calls whose effects happen where the tracer cannot see (one per kind)."""
    if not any(name in source for name in _UNTRACEABLE):
        return ()
    found: List[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            mark = _UNTRACEABLE.get(name)
            if mark and mark not in found:
                found.append(mark)
    return tuple(found)


# ----------------------------------------------------------------------------------------------
# Per code object facts.

_BACKWARD_JUMPS = frozenset(op for name, op in dis.opmap.items() if "BACKWARD" in name)
_GLOBAL_STORES = frozenset(
    dis.opmap[name] for name in ("STORE_GLOBAL", "DELETE_GLOBAL") if name in dis.opmap
)


def code_lines(code: types.CodeType) -> Set[int]:
    return {line for _, _, line in code.co_lines() if line is not None}


def has_backward_jump(code: types.CodeType) -> bool:
    """True when the code can loop (CPython 3.11+ spells every backward jump *_BACKWARD*)."""
    ops = set(code.co_code[::2])
    return not ops.isdisjoint(_BACKWARD_JUMPS)


def stored_globals(code: types.CodeType) -> FrozenSet[str]:
    if set(code.co_code[::2]).isdisjoint(_GLOBAL_STORES):
        return frozenset()
    return frozenset(
        ins.argval for ins in dis.get_instructions(code) if ins.opcode in _GLOBAL_STORES
    )
