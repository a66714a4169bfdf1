"""The candidate process of a judged run: the program alone, answering the judge's calls.

It holds no test, no expected value and no verdict: it loads the program (the setup code's
imports, the fix, the setup code) into a module named ``__solution__``, then answers requests
from the judge (``judge``) until the judge closes the channel:

    ('load', [marshal code, ...], [name, ...])  run the program; reply the named globals
    ('call', callee, args, kwargs)              call a global (by name) or a handle (by
                                                number); reply the result
    ('attr', handle, name)                      read an attribute of an object of the
                                                program's; reply its value
    ('op', name, handle, args)                  str/repr/format/bool/len/iter/getitem of
                                                such an object, isinstance(args[0], handle's
                                                class); reply the result

Replies: ``('ok', value, changed_args)`` or ``('raise', builtin exception name, message[,
changed_args])``; while a call runs, ``('cb', number, args, kwargs)`` calls a function of the
test's (``["F", number]`` in a request) in the judge, which answers ``('cbret', 'ok', value)``
or ``('cbret', 'raise', name, message)`` after any requests of its own.
Values go out as plain data (``plain``) under this policy: exact plain values as they are;
instances of subclasses of builtin types as their base type's data (defaultdict -> dict, a
hostile ``int`` subclass -> its int value; OrderedDict, Counter, deque and namedtuples keep
their kind, see ``plain``); numpy scalars via ``.item()`` and
arrays via ``.tolist()``; ``range`` exactly; generators, iterators, map, filter and dict views
as their items (at most ``MAX_ITEMS``, drained here, then rebuilt by the judge as the same kind
of iterable); callables as handles the judge calls back; anything else as an opaque handle
that carries its class name. Objects of the test's own classes (a tree the setup code built)
arrive by value (``["O", ...]``): an instance of the program's class of that name, else of a bare
class so named, with the same attributes.

``changed_args`` tells the judge what a call did to its arguments, at every depth. Both sides
number the mutable parts of the arguments (lists, dicts, sets, bytearrays, OrderedDicts,
Counters, deques, objects that arrived by value) in the same pre-order (``mutable_parts``);
when any of them changed, the arguments are sent back with each such part written as ``["@",
k, tag, items...]`` (its first appearance: its own wire form after its number) or ``["@", k]``
(later ones), and the judge updates its own part k in place. So a nested list the test holds
an alias to is updated, a list moved from one place to another stays the same object, and a
result that is an argument (``return xs``) is the test's own object.

Everything here runs in the candidate's own process and may be subverted by the program; that
is harmless by construction: the judge only ever reads plain data from this process.
"""

from __future__ import annotations

import builtins
import marshal
import sys
import types
from collections import Counter, OrderedDict, defaultdict, deque
from marshal import loads as _marshal_loads
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, List

from next_jax.execution import channel, plain

# Bound at import (in the worker, before any program runs): a program that patches builtins
# must not break its own answers.
from builtins import (  # noqa: E402,A004
    BaseException, Exception, RuntimeError, SystemExit, ValueError, bytearray, bytes, callable,
    complex, dict, enumerate,
    bool, filter, float, format, frozenset, getattr, hasattr, id, isinstance, issubclass, iter,
    len, list, map, object, range, repr, set, str, tuple, type, vars,
)

MODULE_NAME = "__solution__"
MAX_ITEMS = 100_000
REQUEST_FD, REPLY_FD = 3, 4
_NESTING = frozenset((list, tuple, dict, OrderedDict, Counter, deque))
_SCALARS = frozenset((type(None), bool, int, float, str))
# What the judge may ask of an object of the program's (``Opaque``), bound at import.
_OPS = {"str": str, "repr": repr, "format": format, "bool": bool, "len": len, "iter": iter,
        "getitem": lambda obj, key: obj[key], "isinstance": lambda cls, obj: isinstance(obj, cls)}
# default_factory values the judge rebuilds as its own builtin (others cross as a Proxy).
_FACTORIES = {int: "int", float: "float", str: "str", list: "list", dict: "dict", set: "set",
              tuple: "tuple", bool: "bool"}
_VIEW_KINDS = {type({}.keys()): "dict_keys", type({}.values()): "dict_values",
               type({}.items()): "dict_items"}


class _Handles:
    def __init__(self, ns: dict, stub):
        self.objects: Dict[int, Any] = {}
        self.ids: Dict[int, int] = {}  # id(obj) -> handle; objects stay referenced, ids stable
        self.ns = ns
        self.classes: Dict[str, type] = {}  # bare classes for by-value objects the program lacks
        self.memo: Dict[int, Any] = {}  # this request's by-value objects, by the judge's number
        self.by_value: Dict[int, list] = {}  # id(obj) -> its attribute names, this request
        self.stub = stub  # makes the callable that calls a function of the test's back
        self.stubs: Dict[int, Any] = {}

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
        if tag == "F" and len(r) == 2 and type(r[1]) is int:
            fn = self.stubs.get(r[1])
            if fn is None:
                fn = self.stubs[r[1]] = self.stub(r[1])
            return fn
        if tag == "B" and len(r) == 2 and type(r[1]) is str and hasattr(builtins, r[1]):
            return getattr(builtins, r[1])
        if tag == "O" and len(r) == 2 and r[1] in self.memo:
            return self.memo[r[1]]
        if tag == "O" and len(r) == 4 and type(r[2]) is str:
            obj = self._instance(r[2])
            self.memo[r[1]] = obj
            attrs = plain.decode_item(r[3], depth + 1, self.decode)
            for name, value in attrs.items():
                object.__setattr__(obj, name, value)
            self.by_value[id(obj)] = list(attrs)
            return obj
        raise plain.PlainDataError(f"unknown handle {r[1:2]!r}")

    def _instance(self, name: str) -> Any:
        cls = self.ns.get(name)
        if not isinstance(cls, type):
            cls = self.classes.get(name)
            if cls is None:
                cls = self.classes[name] = type(name, (), {})
        try:
            return cls.__new__(cls)
        except TypeError:  # a __new__ that wants the constructor's arguments
            return object.__new__(cls)

    def start_request(self) -> None:
        self.memo.clear()
        self.by_value.clear()

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
        module = types.ModuleType(MODULE_NAME)
        sys.modules[MODULE_NAME] = module
        self.ns = module.__dict__
        self.ns["__builtins__"] = builtins
        self.handles = _Handles(self.ns, self._stub)
        self.fds = (REQUEST_FD, REPLY_FD)

    # -- values out -------------------------------------------------------------------------

    def encode(self, value: Any) -> Any:
        return plain.to_wire(value, self._convert)

    def _convert(self, v: Any, t: type, depth: int) -> Any:
        if issubclass(t, defaultdict):  # its default_factory answers a test's missing key
            f = v.default_factory
            factory = (None if f is None else f.__name__ if f in _FACTORIES
                       else plain.encode_at(f, depth + 1, self._convert))
            return ["DD", factory, plain.encode_at(dict(dict.items(v)), depth + 1, self._convert)]
        base = _builtin_data(v, t)
        if base is not _NONE:
            return plain.encode_at(base, depth, self._convert)
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
            roots = (*args, *kwargs.values())
            parts = plain.mutable_parts(roots, self._attributes)
            if not parts:  # nothing the call could change in place
                return ["t", "ok", self.encode(fn(*args, **kwargs)), None]
            # Parts that are all arguments themselves (a list of numbers, the common case) are
            # compared one by one; nested ones by one walk of all the arguments.
            top = len(parts) == sum(type(r) in plain.MUTABLE_TYPES for r in roots)
            if top:  # flat arguments: their snapshots do not recurse
                before = self._snapshot(roots, parts, top)
            else:
                with plain.deep():  # the program itself runs with its own recursion limit
                    before = self._snapshot(roots, parts, top)
            try:
                value = fn(*args, **kwargs)
            except Exception as e:  # raised with what the call had changed by then, as in Python
                with plain.deep():
                    changed = (None if self._snapshot(roots, parts, top) == before
                               else _Tracked(self, parts).encode(roots, 0))
                return ["t", "raise", builtin_exception_name(e), _message(e), changed]
            if top and type(value) in _SCALARS and self._snapshot(roots, parts, top) == before:
                return ["t", "ok", plain.encode_at(value, 0), None]
            with plain.deep():
                tracked = _Tracked(self, parts)  # one numbering for the result and the arguments
                out = tracked.encode(value, 0)
                changed = (None if self._snapshot(roots, parts, top) == before
                           else tracked.encode(roots, 0))
            return ["t", "ok", out, changed]
        if op == "attr":
            _, handle, name = msg
            return ["t", "ok", self.encode(getattr(self.handles.resolve(handle), name)), None]
        if op == "op":
            _, name, handle, args = msg
            return ["t", "ok", self.encode(_OPS[name](self.handles.resolve(handle), *args)), None]
        if op == "load":
            _, codes, names = msg
            for code in codes:
                exec(marshal.loads(code), self.ns)  # noqa: S102 (this is the candidate's process)
            found = ["d"]
            for name in names:
                if name in self.ns:
                    found += [name, self.encode(self.ns[name])]
            return ["t", "ok", found, None]
        raise ValueError(f"unknown request {op!r}")

    def serve(self, request_fd: int = REQUEST_FD, reply_fd: int = REPLY_FD) -> None:
        self.fds = (request_fd, reply_fd)
        while True:
            msg = self._next_request()
            if msg is _NONE:
                return
            self._answer(msg)

    def _next_request(self) -> Any:
        """The judge's next request, decoded (a decoding error: a ('bad', exception) request),
        or _NONE when the judge closed the channel."""
        frame = channel.read_frame(self.fds[0])
        if frame is None:
            return _NONE
        try:
            self.handles.start_request()
            if frame[0] == channel.KIND_TRUSTED:  # from the judge: exact builtin values
                return _marshal_loads(frame[1])
            return plain.loads(frame[1], self.handles.decode)
        except BaseException as e:
            return ("bad", e)

    def _answer(self, msg: Any) -> None:
        try:
            if msg[0] == "bad":
                raise msg[1]
            body = plain.wire_bytes(self.handle(msg))
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: the judge decides
            body = plain.wire_bytes(["t", "raise", builtin_exception_name(e), _message(e)])
        channel.write_frame(self.fds[1], 0, body)

    def _stub(self, number: int):
        """The program's stand-in for a function of the test's: calling it sends the call to
        the judge and serves the judge's requests (calls the test's function makes of the
        program) until the judge answers."""
        def call_back(*args, **kwargs):
            return self._call_back(number, args, kwargs)
        return call_back

    def _call_back(self, number: int, args: tuple, kwargs: dict) -> Any:
        body = plain.wire_bytes(["t", "cb", number, self.encode(args), self.encode(kwargs)])
        channel.write_frame(self.fds[1], 0, body)
        # This request's by-value objects: a nested request must not forget them.
        memo, by_value = dict(self.handles.memo), dict(self.handles.by_value)
        try:
            while True:
                msg = self._next_request()
                if msg is _NONE:
                    raise SystemExit(0)  # the judge is gone: nothing to answer any more
                if type(msg) is tuple and len(msg) >= 3 and msg[0] == "cbret":
                    if msg[1] == "ok":
                        return msg[2]
                    cls = getattr(builtins, msg[2], None) if len(msg) == 4 else None
                    if not (isinstance(cls, type) and issubclass(cls, Exception)):
                        cls = RuntimeError
                    raise cls(msg[3] if len(msg) == 4 else "")
                self._answer(msg)
        finally:
            self.handles.memo.update(memo)
            self.handles.by_value.update(by_value)

    def _snapshot(self, roots: tuple, parts: list, top: bool) -> Any:
        if top:
            return [plain.encode_at(p, 0, self._convert) for p in parts]
        return _Tracked(self, parts).encode(roots, 0)

    def _attributes(self, v: Any) -> Any:
        names = self.handles.by_value.get(id(v))
        return None if names is None else [getattr(v, n) for n in names]


class _Tracked:
    """Encodes values of one reply in which the mutable parts of the call's arguments are
    written by their number (``["@", k, tag, items...]`` the first time, ``["@", k]`` after)."""

    def __init__(self, server: Server, parts: list):
        self.server = server
        self.index = {id(p): k for k, p in enumerate(parts)}
        self.emitted: set = set()

    def encode(self, v: Any, depth: int) -> Any:
        if depth > plain.MAX_DEPTH:
            raise plain.PlainDataError(f"nested deeper than {plain.MAX_DEPTH} levels")
        k = self.index.get(id(v))
        if k is not None:
            if k in self.emitted:
                return ["@", k]
            self.emitted.add(k)
            return ["@", k, *self.contents(v, depth)]  # no extra level: as deep as the value
        if type(v) in _NESTING:
            return self.contents(v, depth)
        return plain.encode_at(v, depth, self.server._convert)

    def contents(self, v: Any, depth: int) -> Any:
        t = type(v)
        d = depth + 1
        if t is list or t is tuple:
            if set(map(type, v)) <= plain.LEAF_TYPES:  # no part inside: plain data's fast path
                return plain.encode_at(v, depth, self.server._convert)
            return ["l" if t is list else "t", *[self.encode(x, d) for x in v]]
        if t in _MAPPINGS:
            out = [_MAPPINGS[t]]
            for key, x in v.items():
                out.append(plain.encode_at(key, d, self.server._convert))
                out.append(self.encode(x, d))
            return out
        if t is deque:
            return ["Q", v.maxlen, *[self.encode(x, d) for x in v]]
        names = self.server.handles.by_value.get(id(v))
        if names is not None:  # an object that arrived by value: its attributes now
            attrs = vars(v) if hasattr(v, "__dict__") else {n: getattr(v, n) for n in names}
            out = ["d"]
            for key, x in attrs.items():
                out.append(plain.encode_at(key, d))
                out.append(self.encode(x, d))
            return out
        return plain.encode_at(v, depth, self.server._convert)  # a set, a bytearray


_MAPPINGS = {dict: "d", OrderedDict: "D", Counter: "C"}
_NONE = object()


def _builtin_data(v: Any, t: type) -> Any:
    """The plain data inside a value of a subclass of a plain type (or numpy), else _NONE."""
    if issubclass(t, OrderedDict):  # before dict: its == is not a dict's, nor is Counter's
        return OrderedDict(OrderedDict.items(v))
    if issubclass(t, Counter):
        return Counter(dict(dict.items(v)))
    if issubclass(t, deque):
        return deque(v, v.maxlen)
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
