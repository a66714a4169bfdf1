"""Splits test code so that the pass/fail decision is taken outside the candidate's process.

Every ``assert E`` in a test (at any depth: module level, inside ``def check(candidate)``, in
loops) is rewritten. ``E`` is cut into a *template*, evaluated by the parent, and *holes*: the
maximal sub-expressions the parent cannot evaluate itself (anything that names the candidate's
functions, test variables or non-whitelisted functions). The rewritten statement is::

    __nj_assert__(SITE, lambda: HOLE_0, lambda: HOLE_1, ...)

so the child evaluates only the holes (in their original scope) and sends their values back as
plain data; the template (e.g. ``_h0 == [2, 3]`` or ``math.isclose(_h0, 0.5, rel_tol=1e-3)``),
with the expected value in it, never enters the child. A candidate can therefore only pass an
assert by producing the values that make the parent's template true; an object with an
always-true ``__eq__`` cannot even be sent (plain data only), and patching builtins, operator
or the assert statement in the child changes nothing the parent evaluates.

Test forms:
  * **split** — a test made only of assert statements whose holes name nothing the test itself
    defines (the MBPP/HumanEval norm, ``assert f(x) == y``). The expected values live only in
    the parent.
  * **guarded** — anything else (``def check(candidate): ...`` then ``check(f)``, loops, helper
    variables, tests without asserts). Statements run in the child; every assert is still
    decided by the parent, but a hole may hold a value the test computed in the child (a
    candidate inspecting its caller's frame could read it), and a test without any assert is
    passed on the child's report that it finished, plus a clean exit.

Completion rules the parent enforces: every test reports its start and its end in order, and
every *required* assert site (one not nested in ``if``/``while``/``try``/``with``/``match`` or
in a nested function or class) reports at least once, so jumping over asserts with a trace
function, exiting early or swallowing the harness's calls all fail the test.
"""

from __future__ import annotations

import ast
import dataclasses
import marshal
from typing import List, Optional, Tuple

from next_jax.execution.harness import ASSERT_HOOK

# Names a template may use; each maps to the trusted object the parent evaluates it with.
TEMPLATE_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "bytes", "chr", "complex", "dict", "divmod", "enumerate",
    "float", "frozenset", "int", "isinstance", "len", "list", "map", "max", "min", "ord", "pow",
    "range", "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "type", "zip",
})
TEMPLATE_MATH = frozenset({
    "isclose", "fabs", "isnan", "isinf", "isfinite", "sqrt", "floor", "ceil", "trunc", "inf",
    "nan", "pi", "e", "tau", "log", "log2", "log10", "exp", "gcd", "hypot", "copysign", "fsum",
})

_TEMPLATE_NODES = (
    ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Call, ast.Subscript, ast.Tuple,
    ast.List, ast.Set, ast.Dict, ast.IfExp, ast.Slice, ast.Constant,
)
_OPAQUE = (ast.Lambda, ast.GeneratorExp, ast.Starred, ast.Await, ast.Yield, ast.YieldFrom,
           ast.NamedExpr)
_OPTIONAL_SCOPES = (ast.If, ast.While, ast.Try, ast.With, ast.AsyncWith, ast.Match,
                    ast.AsyncFor, ast.ExceptHandler)
try:
    _OPTIONAL_SCOPES += (ast.TryStar,)  # Python >= 3.11
except AttributeError:  # pragma: no cover
    pass


class _Opaque(Exception):
    """A sub-expression that can be neither a template part nor a hole on its own."""


@dataclasses.dataclass(frozen=True)
class Site:
    """One assert statement of a test: the parent's template and the holes the child fills."""

    index: int          # global site number within the task
    test: int           # which test it belongs to
    source: str         # the original assert, for messages
    template: bytes     # marshal of the compiled template expression (names _h0, _h1, ...)
    holes: Tuple[str, ...]
    required: bool


@dataclasses.dataclass(frozen=True)
class SplitTest:
    source: str
    code: bytes          # marshal of the rewritten test, compiled for exec in the child
    form: str            # 'split' | 'guarded'
    sites: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class SplitTests:
    tests: Tuple[SplitTest, ...]
    sites: Tuple[Site, ...]
    strict_types: bool


def _is_math_attr(node: ast.AST, shadowed: frozenset) -> bool:
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "math" and "math" not in shadowed and node.attr in TEMPLATE_MATH
            and isinstance(node.ctx, ast.Load))


def _trusted(node: ast.AST, shadowed: frozenset) -> bool:
    """True if the parent can evaluate ``node`` with no value from the child.

    ``shadowed`` are names the test itself binds (``str = ...``, a ``sorted`` parameter): there
    the name is the test's variable, not the builtin, so it belongs in a hole.
    """
    if isinstance(node, ast.Name):
        return ((node.id in TEMPLATE_BUILTINS and node.id not in shadowed)
                or node.id in ("True", "False", "None"))
    if _is_math_attr(node, shadowed):
        return True
    if isinstance(node, ast.Call) and not _callable_ok(node, shadowed):
        return False
    if not isinstance(node, _TEMPLATE_NODES + (ast.keyword, ast.cmpop, ast.operator, ast.unaryop,
                                              ast.boolop, ast.expr_context)):
        return False
    return all(_trusted(c, shadowed) for c in ast.iter_child_nodes(node))


def _callable_ok(node: ast.Call, shadowed: frozenset) -> bool:
    f = node.func
    named = ((isinstance(f, ast.Name) and f.id in TEMPLATE_BUILTINS and f.id not in shadowed)
             or _is_math_attr(f, shadowed))
    return named and all(k.arg is not None for k in node.keywords)


class _Splitter:
    def __init__(self, shadowed: frozenset):
        self.holes: List[ast.expr] = []
        self.shadowed = shadowed

    def split(self, node: ast.expr) -> ast.expr:
        if _trusted(node, self.shadowed):
            return node
        if isinstance(node, _OPAQUE):
            raise _Opaque()
        if isinstance(node, _TEMPLATE_NODES) and (
                not isinstance(node, ast.Call) or _callable_ok(node, self.shadowed)):
            if not any(isinstance(c, ast.Starred) for c in ast.walk(node) if c is not node) and \
                    not (isinstance(node, ast.Dict) and None in node.keys):
                mark = len(self.holes)
                try:
                    return self._rebuild(node)
                except _Opaque:
                    del self.holes[mark:]  # this whole node becomes one hole instead
        return self._hole(node)

    def _rebuild(self, node: ast.expr) -> ast.expr:
        new = type(node)(**{f: getattr(node, f) for f in node._fields})
        for field, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(new, field, self._child(node, field, value))
            elif isinstance(value, list):
                setattr(new, field, [self._child(node, field, v) if isinstance(v, ast.expr)
                                     else self._keyword(v) if isinstance(v, ast.keyword) else v
                                     for v in value])
        return ast.copy_location(new, node)

    def _child(self, parent: ast.expr, field: str, value: ast.expr) -> ast.expr:
        if isinstance(parent, ast.Call) and field == "func":
            return value  # already checked to be a whitelisted name
        return self.split(value)

    def _keyword(self, kw: ast.keyword) -> ast.keyword:
        return ast.keyword(arg=kw.arg, value=self.split(kw.value))

    def _hole(self, node: ast.expr) -> ast.expr:
        if isinstance(node, _OPAQUE):
            raise _Opaque()
        self.holes.append(node)
        return ast.Name(id=f"_h{len(self.holes) - 1}", ctx=ast.Load())


def _split_expr(test: ast.expr, shadowed: frozenset) -> Tuple[ast.expr, List[ast.expr]]:
    s = _Splitter(shadowed)
    try:
        template = s.split(test)
    except _Opaque:
        s = _Splitter(shadowed)
        s.holes.append(test)
        template = ast.Name(id="_h0", ctx=ast.Load())
    return template, s.holes


class _TemplateGuard(ast.NodeTransformer):
    """Routes size-amplifying operators through guarded helpers, and == through strict ones."""

    def __init__(self, strict_types: bool):
        self.strict = strict_types

    def visit_BinOp(self, node: ast.BinOp):
        self.generic_visit(node)
        name = {ast.Pow: "_nj_pow", ast.Mult: "_nj_mul", ast.LShift: "_nj_lshift"}.get(type(node.op))
        if name is None:
            return node
        return ast.copy_location(ast.Call(ast.Name(name, ast.Load()), [node.left, node.right], []), node)

    def visit_Compare(self, node: ast.Compare):
        self.generic_visit(node)
        if not self.strict or not any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            return node
        parts, left = [], node.left
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.Eq, ast.NotEq)):
                call = ast.Call(ast.Name("_nj_strict_eq", ast.Load()), [left, right], [])
                parts.append(call if isinstance(op, ast.Eq) else ast.UnaryOp(ast.Not(), call))
            else:
                parts.append(ast.Compare(left, [op], [right]))
            left = right
        out = parts[0] if len(parts) == 1 else ast.BoolOp(ast.And(), parts)
        return ast.copy_location(out, node)


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self, test_index: int, first_site: int, source: str, strict_types: bool,
                 shadowed: frozenset):
        self.shadowed = shadowed
        self.test_index = test_index
        self.next_site = first_site
        self.source = source
        self.strict = strict_types
        self.sites: List[Site] = []
        self.depth_optional = 0
        self.depth_def = 0
        self.local_names: set = set()

    def _scoped(self, node, optional: bool = False, is_def: bool = False):
        self.depth_optional += optional
        self.depth_def += is_def
        self.generic_visit(node)
        self.depth_optional -= optional
        self.depth_def -= is_def
        return node

    def visit_FunctionDef(self, node):
        # Top-level test helpers (``def check(candidate)``) are called by the test itself.
        return self._scoped(node, optional=self.depth_def > 0, is_def=True)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        return self._scoped(node, optional=True, is_def=True)

    def visit_Lambda(self, node):
        return node

    def generic_visit(self, node):
        if isinstance(node, _OPTIONAL_SCOPES):
            self.depth_optional += 1
            super().generic_visit(node)
            self.depth_optional -= 1
            return node
        return super().generic_visit(node)

    def visit_Assert(self, node: ast.Assert):
        template, holes = _split_expr(node.test, self.shadowed)
        template = _TemplateGuard(self.strict).visit(ast.Expression(body=template))
        ast.fix_missing_locations(template)
        site = Site(
            index=self.next_site, test=self.test_index,
            source=(ast.get_source_segment(self.source, node) or ast.unparse(node))[:500],
            template=marshal.dumps(compile(template, f"<template {self.next_site}>", "eval")),
            holes=tuple(ast.unparse(h) for h in holes),
            required=self.depth_optional == 0,
        )
        self.sites.append(site)
        self.next_site += 1
        call = ast.Call(
            func=ast.Name(ASSERT_HOOK, ast.Load()),
            args=[ast.Constant(site.index)] + [
                ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[],
                                              defaults=[]), body=h) for h in holes],
            keywords=[],
        )
        return ast.copy_location(ast.Expr(call), node)


def _defined_names(tree: ast.Module) -> set:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def split_tests(tests: List[str], strict_types: bool = False, filename: str = "<test>") -> SplitTests:
    """Rewrites each test for the child and collects the parent's templates.

    Raises SyntaxError (with ``filename`` and the test's number) for a test that does not parse.
    """
    out_tests, out_sites = [], []
    for i, source in enumerate(tests):
        name = f"{filename}[{i}]"
        tree = ast.parse(source, filename=name)
        defined = _defined_names(tree)
        only_asserts = all(isinstance(s, ast.Assert) for s in tree.body)
        rewriter = _AssertRewriter(i, len(out_sites), source, strict_types, frozenset(defined))
        new_tree = ast.fix_missing_locations(rewriter.visit(tree))  # rewrites ``tree`` in place
        hole_names = {n.id for site in rewriter.sites for h in site.holes
                      for n in ast.walk(ast.parse(h, mode="eval")) if isinstance(n, ast.Name)}
        form = "split" if only_asserts and not (hole_names & defined) else "guarded"
        code = compile(new_tree, name, "exec", dont_inherit=True, optimize=0)
        out_tests.append(SplitTest(source=source, code=marshal.dumps(code), form=form,
                                   sites=tuple(s.index for s in rewriter.sites)))
        out_sites.extend(rewriter.sites)
    return SplitTests(tests=tuple(out_tests), sites=tuple(out_sites), strict_types=strict_types)


def first_import_statements(source: str) -> Optional[str]:
    """The top-level import statements of ``source`` (run before the fix), or None if none."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imports:
        return None
    return "\n".join(ast.unparse(n) for n in imports)
