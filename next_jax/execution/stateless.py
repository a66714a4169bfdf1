"""Which tasks' judge-side code provably leaves the judge's modules as it found them.

Every task's tests must start in a judge whose modules no other task's tests changed: a test
that sets ``decimal``'s context, seeds ``random`` or rebinds a module global would otherwise
change the next task's expected values. The sandbox gives each group of runs a judge of its
own (``SandboxPool.map_each``), forked from the zygote, which costs a process per group. Most
tests (``assert f(2) == 4``, ``check(candidate)`` with asserts and loops) cannot change any
state outside their own namespace, which is fresh for every run; runs of such tasks can share
a judge with no effect on any verdict. ``stateless(sources)`` says whether all of a task's
judge-side code (tests, setup code, trusted program) is of that kind. It is conservative: it
accepts only code built from the constructs below and answers False for anything else, which
costs speed, never correctness.

Accepted: literals, names, arithmetic, comparisons, comprehensions, ``assert``, ``if``,
``for``, ``while``, ``try``, ``raise``, ``return``, ``pass``/``break``/``continue``, ``del``
of names, assignments to names (plain, augmented, unpacking, ``:=``), functions and lambdas
without decorators; calls of the builtins in ``_PURE_BUILTINS``, of names the code binds
itself (the entry point, its own functions), of methods of values (``xs.append``,
``s.lower()``: a value the code itself made or received), and of the module functions in
``_PURE_MODULES`` (imported as ``import m`` or ``from m import f``). Refused, among others:
any attribute or subscript store or delete, ``global``/``nonlocal``, classes, decorators,
``with``, a module name used other than as ``m.f`` of an accepted ``f``, names or attributes
starting with ``_``, and every other module (``random``, ``decimal``, ``sys``, ``os``...).
"""

from __future__ import annotations

import ast
import builtins
from typing import Iterable

_PURE_BUILTINS = frozenset((
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset",
    "hash", "hex", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max",
    "min", "next", "oct", "ord", "pow", "print", "range", "repr", "reversed", "round", "set",
    "slice", "sorted", "str", "sum", "tuple", "type", "zip",
    # exceptions a test raises or catches
    "Exception", "ValueError", "TypeError", "KeyError", "IndexError", "AssertionError",
    "ZeroDivisionError", "RuntimeError", "StopIteration", "ArithmeticError", "LookupError",
    "NotImplementedError", "OverflowError", "AttributeError", "NameError", "RecursionError",
    "True", "False", "None",
))

# Module functions (and constants) that neither keep nor change state of their module.
_PURE_MODULES = {
    "math": frozenset(n for n in dir(__import__("math")) if not n.startswith("_")),
    "cmath": frozenset(n for n in dir(__import__("cmath")) if not n.startswith("_")),
    "string": frozenset(("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits",
                         "hexdigits", "octdigits", "punctuation", "printable", "whitespace")),
    "itertools": frozenset(n for n in dir(__import__("itertools")) if not n.startswith("_")),
    "operator": frozenset(n for n in dir(__import__("operator")) if not n.startswith("_")),
    "functools": frozenset(("reduce", "partial", "cmp_to_key")),
    "collections": frozenset(("Counter", "deque", "OrderedDict", "defaultdict", "namedtuple")),
    "heapq": frozenset(("heapify", "heappush", "heappop", "heappushpop", "heapreplace",
                        "nlargest", "nsmallest", "merge")),
    "bisect": frozenset(("bisect", "bisect_left", "bisect_right", "insort", "insort_left",
                         "insort_right")),
    "copy": frozenset(("copy", "deepcopy")),
    "fractions": frozenset(("Fraction",)),
    "typing": frozenset(("List", "Dict", "Tuple", "Set", "Optional", "Any", "Union",
                         "Callable", "Iterable", "Iterator", "Sequence")),
}

_OK_NODES = (
    ast.Module, ast.Expr, ast.Assert, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For,
    ast.While, ast.If, ast.Break, ast.Continue, ast.Pass, ast.Return, ast.Try, ast.ExceptHandler,
    ast.Raise, ast.Delete, ast.FunctionDef, ast.Lambda, ast.arguments, ast.arg, ast.keyword,
    ast.Import, ast.ImportFrom, ast.alias,
    ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Call, ast.Attribute,
    ast.Subscript, ast.Slice, ast.Starred, ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Set,
    ast.Dict, ast.JoinedStr, ast.FormattedValue, ast.ListComp, ast.SetComp, ast.DictComp,
    ast.GeneratorExp, ast.comprehension, ast.NamedExpr,
    ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop,
)


class _Refused(Exception):
    pass


def _check_tree(tree: ast.AST) -> None:
    modules = {}  # name bound by an import -> module
    functions = {}  # name bound by ``from m import f`` -> (module, f)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name not in _PURE_MODULES:
                    raise _Refused(a.name)
                modules[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in _PURE_MODULES:
                raise _Refused(str(node.module))
            for a in node.names:
                if a.name not in _PURE_MODULES[node.module]:
                    raise _Refused(f"{node.module}.{a.name}")
                functions[a.asname or a.name] = (node.module, a.name)
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    builtin_names = set(dir(builtins))
    for node in ast.walk(tree):
        if not isinstance(node, _OK_NODES):
            raise _Refused(type(node).__name__)
        if isinstance(node, ast.FunctionDef) and (node.decorator_list or node.returns):
            raise _Refused("decorated function")
        if isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
            raise _Refused("store into an object")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise _Refused(node.attr)
        if isinstance(node, ast.Name):
            name = node.id
            if name.startswith("_"):
                raise _Refused(name)
            parent = parents.get(node)
            if name in modules:
                if not (isinstance(parent, ast.Attribute) and parent.value is node
                        and parent.attr in _PURE_MODULES[modules[name]]):
                    raise _Refused(f"module {name} used as a value")
            elif name in builtin_names and name not in _PURE_BUILTINS and name not in functions:
                raise _Refused(name)


def stateless(sources: Iterable[str]) -> bool:
    """True if running every source (tests, setup code, trusted program) in a fresh namespace
    provably changes nothing outside that namespace (see the module doc)."""
    try:
        for source in sources:
            if source and source.strip():
                _check_tree(ast.parse(source))
    except (_Refused, SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True
