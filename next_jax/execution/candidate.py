"""The candidate process of a judged run: the program alone, answering the judge's calls.

It holds no test, no expected value and no verdict: it loads the program (the setup code's
imports, the fix, the setup code) into a module named ``__solution__``, then answers requests
from the judge (``judge``) until the judge closes the channel:

    ('load', [marshal code, ...], [name, ...])  run the program; reply the named globals
    ('call', callee, args, kwargs)              call a global (by name) or a handle (by
                                                number); reply the result

Replies: ``('ok', value, changed_args)`` or ``('raise', builtin exception name, message)``.
Values go out as plain data (``plain``) under this policy: exact plain values as they are;
instances of subclasses of builtin types as their base type's data (namedtuple -> tuple,
Counter -> dict, a hostile ``int`` subclass -> its int value); numpy scalars via ``.item()`` and
arrays via ``.tolist()``; ``range`` exactly; generators, iterators, map, filter and dict views
as their items (at most ``MAX_ITEMS``, drained here, then rebuilt by the judge as the same kind
of iterable); callables as handles the judge calls back; anything else as an opaque handle
that carries its class name. ``changed_args`` holds the new value of every list, dict, set or
bytearray argument the call changed, so tests that mutate in place see the change.

Everything here runs in the candidate's own process and may be subverted by the program; that
is harmless by construction: the judge only ever reads plain data from this process.
"""

from __future__ import annotations

import builtins
import marshal
import sys
import types
from marshal import loads as _marshal_loads
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, List

from next_jax.execution import channel, plain

# Bound at import (in the worker, before any program runs): a program that patches builtins
# must not break its own answers.
from builtins import (  # noqa: E402,A004
    BaseException, Exception, ValueError, bytearray, bytes, callable, complex, dict, enumerate,
    filter, float, frozenset, getattr, hasattr, id, isinstance, issubclass, iter, len, list, map,
    range, set, str, tuple, type,
)

MODULE_NAME = "__solution__"
MAX_ITEMS = 100_000
REQUEST_FD, REPLY_FD = 3, 4
_MUTABLE = (list, dict, set, bytearray)
_VIEW_KINDS = {type({}.keys()): "dict_keys", type({}.values()): "dict_values",
               type({}.items()): "dict_items"}


class _Handles:
    def __init__(self):
        self.objects: Dict[int, Any] = {}
        self.ids: Dict[int, int] = {}  # id(obj) -> handle; objects stay referenced, ids stable

    def add(self, obj: Any) -> int:
        i = self.ids.get(id(obj))
        if i is None:
            i = self.ids[id(obj)] = len(self.objects) + 1
            self.objects[i] = obj
        return i

    def decode(self, tag: str, r: list, depth: int) -> Any:
        if tag == "h" and len(r) == 2 and type(r[1]) is int and r[1] in self.objects:
            return self.objects[r[1]]
        if tag == "r" and len(r) == 4 and all(type(x) is int for x in r[1:]) and r[3] != 0:
            return range(r[1], r[2], r[3])  # the judge sends ranges as they are
        raise plain.PlainDataError(f"unknown handle {r[1:2]!r}")

    def resolve(self, handle: int) -> Any:
        return self.decode("h", ["h", handle], 0)


def builtin_exception_name(e: BaseException) -> str:
    """The name of the first builtin class in the exception's MRO (the judge raises that)."""
    for cls in type(e).__mro__:
        if cls.__module__ == "builtins" and getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return "Exception"


class Server:
    def __init__(self):
        self.handles = _Handles()
        module = types.ModuleType(MODULE_NAME)
        sys.modules[MODULE_NAME] = module
        self.ns = module.__dict__
        self.ns["__builtins__"] = builtins

    # -- values out -------------------------------------------------------------------------

    def encode(self, value: Any) -> Any:
        return plain.to_wire(value, self._convert)

    def _convert(self, v: Any, t: type, depth: int) -> Any:
        base = _builtin_data(v, t)
        if base is not _NONE:
            return plain.to_wire(base, self._convert)
        if t is range:
            return ["r", self.encode(v.start), self.encode(v.stop), self.encode(v.step)]
        kind = _VIEW_KINDS.get(t)
        if kind is not None or _is_iterator(v):
            return self._drain(kind or _iterator_kind(t), iter(v))
        if callable(v):
            return ["h", self.handles.add(v), _name_of(v)]
        if isinstance(v, types.ModuleType):
            return ["M", str(getattr(v, "__name__", ""))]
        return ["o", self.handles.add(v), _name_of(t)]

    def _drain(self, kind: str, it) -> list:
        items: List[Any] = []
        end: Any = ""
        try:
            for x in it:
                if len(items) >= MAX_ITEMS:
                    end = "more"
                    break
                items.append(self.encode(x))
        except Exception as e:
            end = ["raise", builtin_exception_name(e), _message(e)]
        return ["g", kind, ["l", *items], end]

    # -- requests ---------------------------------------------------------------------------

    def handle(self, msg: Any) -> Any:
        op = msg[0]
        if op == "call":
            _, callee, args, kwargs = msg  # callee: a global's name or a handle's number
            fn = self.ns[callee] if type(callee) is str else self.handles.resolve(callee)
            before = [self.encode(a) if type(a) in _MUTABLE else None for a in args]
            kw_before = {k: self.encode(a) for k, a in kwargs.items() if type(a) in _MUTABLE}
            value = self.encode(fn(*args, **kwargs))
            changed = []
            for i, old in enumerate(before):
                if old is not None:
                    new = self.encode(args[i])
                    if new != old:
                        changed.append([i, new])
            for k, old in kw_before.items():
                new = self.encode(kwargs[k])
                if new != old:
                    changed.append([k, new])
            return ["t", "ok", value, ["l", *[["t", *c] for c in changed]]]
        if op == "load":
            _, codes, names = msg
            for code in codes:
                exec(marshal.loads(code), self.ns)  # noqa: S102 (this is the candidate's process)
            found = ["d"]
            for name in names:
                if name in self.ns:
                    found += [name, self.encode(self.ns[name])]
            return ["t", "ok", found, ["l"]]
        raise ValueError(f"unknown request {op!r}")

    def serve(self, request_fd: int = REQUEST_FD, reply_fd: int = REPLY_FD) -> None:
        while True:
            frame = channel.read_frame(request_fd)
            if frame is None:
                return
            try:
                if frame[0] == channel.KIND_TRUSTED:  # from the judge: exact builtin values
                    msg = _marshal_loads(frame[1])
                else:
                    msg = plain.loads(frame[1], self.handles.decode)
                reply = self.handle(msg)
                body = plain.wire_bytes(reply)
            except BaseException as e:  # SystemExit and KeyboardInterrupt too: the judge decides
                body = plain.wire_bytes(["t", "raise", builtin_exception_name(e), _message(e)])
            channel.write_frame(reply_fd, 0, body)


_NONE = object()


def _builtin_data(v: Any, t: type) -> Any:
    """The plain data inside a value of a subclass of a plain type (or numpy), else _NONE."""
    for base, copy in ((bool, None), (int, int.__index__), (float, float.__float__),
                       (str, str.__str__), (bytes, bytes), (bytearray, bytearray),
                       (tuple, tuple), (list, list), (dict, dict), (set, set),
                       (frozenset, frozenset)):
        if copy is not None and issubclass(t, base):
            return copy(v)
    if issubclass(t, complex):
        return complex(complex.real.__get__(v), complex.imag.__get__(v))
    if issubclass(t, Fraction):
        return Fraction(v.numerator, v.denominator)
    if issubclass(t, Decimal):
        return Decimal(v)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.generic) and type(v.item()) is not t:
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    return _NONE


def _is_iterator(v: Any) -> bool:
    t = type(v)
    return hasattr(t, "__next__") and hasattr(t, "__iter__")


def _iterator_kind(t: type) -> str:
    if t is types.GeneratorType:
        return "generator"
    if t is map:
        return "map"
    if t is filter:
        return "filter"
    return "iterator"


def _name_of(v: Any) -> str:
    try:
        name = v.__name__
        return name if type(name) is str else "object"
    except Exception:
        return "object"


def _message(e: BaseException) -> str:
    try:
        return str(e)[:2000]
    except BaseException:
        return "<unprintable>"


def serve(_payload: Any) -> None:
    """Sandbox target of the candidate process (fds: 3 requests in, 4 replies out)."""
    Server().serve()
