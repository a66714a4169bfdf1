"""Checks the literal values of a parsed gin config against the bound parameters' annotations.

Gin accepts any Python literal for any parameter, so ``--gin.TRAIN_STEPS=\\"abc\\"`` reaches
``train(train_steps='abc')`` and fails minutes later, after compiling, deep inside the run. This
check runs after parsing and before any work: every binding whose value is a literal (directly or
through macros) is compared with the annotation of the parameter it binds, and a mismatch is a
:class:`GinTypeError` naming the binding, the macro it went through, and the type wanted.

Only plain annotations are checked (``int``, ``float``, ``str``, ``bool``, ``None`` and their
``Optional``/``Union``); containers, references (``@f()``) and anything unresolvable pass
untouched, so the check can refuse a config only for a real mismatch.
"""

from __future__ import annotations

import inspect
import typing
from typing import Dict, Mapping, Optional, Tuple

from next_jax.errors import UserError

_SIMPLE = (bool, int, float, str, type(None))
_NAMES = {bool: "a bool", int: "an int", float: "a float", str: "a string", type(None): "None"}


class GinTypeError(UserError, TypeError):
    """A gin binding whose value has the wrong type for its parameter."""


class _Ref:
    def __init__(self, name: str):
        self.name = name


class _Macro:
    def __init__(self, name: str):
        self.name = name


def _statements(config_text: str):
    from gin import config_parser

    class Delegate(config_parser.ParserDelegate):
        def configurable_reference(self, scoped_name, evaluate):
            return _Ref(scoped_name)

        def macro(self, macro_name):
            return _Macro(macro_name)

    for statement in config_parser.ConfigParser(config_text, Delegate()):
        if isinstance(statement, config_parser.BindingStatement):
            yield statement


def _resolve(value, macros: Mapping[str, object]) -> Tuple[object, list]:
    """(the value a chain of macros ends at, the macro names passed through)."""
    path = []
    while isinstance(value, _Macro) and value.name in macros and len(path) < 10:
        path.append(value.name)
        value = macros[value.name]
    return value, path


def _macros(statements) -> Dict[str, object]:
    return {s.selector: s.value for s in statements if not s.arg_name and not s.scope and "." not in s.selector}


def parameters_reading(config_text: str, macro: str, value=None) -> list:
    """``selector.arg`` of every parameter bound to ``macro`` (through any chain of macros) or, if
    ``value`` is given, to that same literal."""
    statements = list(_statements(config_text))
    macros = _macros(statements)
    out = []
    for s in statements:
        if not s.arg_name:
            continue
        resolved, path = _resolve(s.value, macros)
        if macro in path or (value is not None and not isinstance(resolved, (_Ref, _Macro)) and resolved == value):
            out.append(f"{s.selector}.{s.arg_name}")
    return out


def _allowed(annotation) -> Optional[Tuple[type, ...]]:
    """The simple types an annotation admits, or None when it is not a plain one."""
    if annotation in _SIMPLE:
        return (annotation,)
    if typing.get_origin(annotation) is typing.Union:
        out = []
        for arg in typing.get_args(annotation):
            inner = _allowed(arg)
            if inner is None:
                return None
            out.extend(inner)
        return tuple(out)
    return None


def _accepts(allowed: Tuple[type, ...], value) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    return isinstance(value, allowed)


def _target(selector: str):
    import gin

    try:
        target = gin.get_configurable(selector)
    except Exception:
        return None
    while hasattr(target, "__wrapped__"):
        target = target.__wrapped__
    return target


def _bare(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _reachable(statements, macros: Mapping[str, object], entry) -> set:
    """The configurables a call of ``entry`` can reach: the entry, and whatever its bindings
    reference (``@name``), directly or through macros, transitively. Bindings of other run modes'
    entry functions (e.g. eval.gin's, included by a training experiment) are never called."""
    by_selector: Dict[str, list] = {}
    for s in statements:
        if s.arg_name:
            by_selector.setdefault(s.selector, []).append(s.value)
    roots = [sel for sel in by_selector if _target(sel) is entry]
    seen, todo = set(), list(roots)
    while todo:
        selector = todo.pop()
        if selector in seen:
            continue
        seen.add(selector)
        stack = list(by_selector.get(selector, ()))
        while stack:
            value = stack.pop()
            value, _ = _resolve(value, macros)
            if isinstance(value, _Ref):
                todo.append(_bare(value.name))
            elif isinstance(value, (list, tuple, set)):
                stack.extend(value)
            elif isinstance(value, dict):
                stack.extend(value.values())
    return seen


def _hints(selector: str) -> Optional[Dict[str, object]]:
    target = _target(selector)
    if target is None:
        return None
    try:
        fn = target.__init__ if inspect.isclass(target) else target
        return typing.get_type_hints(fn)
    except Exception:  # annotations naming what the module imports only for type checkers
        return None


def check(config_text: str, overrides: Optional[Mapping[str, str]] = None, entry=None) -> None:
    """Raises GinTypeError at the first literal that its parameter's annotation refuses.

    ``config_text``: ``gin.config_str()`` of the parsed config; ``overrides``: macro name -> the
    command-line binding that set it (named in the message, since that is what the user typed);
    ``entry``: the function the run calls; only what it can reach is checked (None: everything).
    """
    overrides = overrides or {}
    statements = list(_statements(config_text))
    macros = _macros(statements)
    reachable = _reachable(statements, macros, entry) if entry is not None else None
    for s in statements:
        if not s.arg_name or (reachable is not None and s.selector not in reachable):
            continue
        value, path = _resolve(s.value, macros)
        if isinstance(value, (_Ref, _Macro)) or not isinstance(value, _SIMPLE):
            continue
        hints = _hints(s.selector)
        if not hints or s.arg_name not in hints:
            continue
        allowed = _allowed(hints[s.arg_name])
        if allowed is None or _accepts(allowed, value):
            continue
        wanted = " or ".join(_NAMES[t] for t in allowed)
        scope = f"{s.scope}/" if s.scope else ""
        binding = f"{scope}{s.selector}.{s.arg_name}"
        if path:
            origin = overrides.get(path[-1])
            via = f" through macro {' -> '.join(path)}" + (f" (set by --gin.{origin.replace(' = ', '=', 1)})" if origin else "")
            fix = f"set {path[-1]} to {wanted}"
        else:
            via, fix = "", f"bind {binding} to {wanted}"
        hint = " (numbers and booleans are written without quotes)" if isinstance(value, str) else ""
        raise GinTypeError(f"gin binding {binding} = {value!r}{via}: {s.arg_name} takes {wanted}, not "
                           f"{_NAMES.get(type(value), type(value).__name__)}; {fix}{hint}")
