"""The judge process of a judged run: the test suite, run with real Python, against proxies.

The judge never shares a process with the candidate program. It holds the tests (trusted to be
honest: they come from the dataset; still sandboxed, since a corpus is data, not our code), runs
them with real Python, and reaches the program only through ``Candidate``: a pipe to the
candidate process (``candidate``) over which it sends calls and reads plain data back. So an
assert, a loop, a helper or ``check(candidate)`` means here exactly what it means in Python,
and nothing the candidate does inside its own process can reach a test's values, frames or
hooks, or this process's reports.

What crosses back and how it is rebuilt here:

* plain values (``plain``): exact builtin types, decoded with caps; every comparison in a test
  is Python's own, on values the candidate cannot give a custom ``__eq__``;
* changed arguments: a list/dict/set/bytearray argument the call changed is updated in place;
* an exception the candidate raised: raised here as the same builtin exception type (a class
  of the program's own as its first builtin base), except ``StopIteration`` (as RuntimeError,
  so it cannot end a test's loop early) and exceptions that are not ``Exception``s (as a fault);
* generators, iterators, map, filter, dict views: their items (drained by the candidate, at
  most ``candidate.MAX_ITEMS``), rebuilt as the same kind of iterable; ``range`` exactly;
* functions and classes: a ``Proxy`` one can call (and read attributes of); modules: the same
  stdlib module imported here; one Proxy or marker per object of the candidate's;
* objects of the program's own classes: an opaque marker (class ``Opaque`` named like the
  candidate's class). It supports ``is``, ``type(x).__name__``, being passed back to the
  candidate, and what Python asks the object itself, asked of the candidate with the answer
  crossing as plain data: attributes (methods as Proxies), ``str``, ``repr``, ``format``,
  ``len``, truth, iteration and ``x[key]``. Comparing it, hashing it and ``in`` raise
  ``CandidateFault`` (they would be the program's code judging its own answer: an object
  equal to everything) and the test's verdict is ``error``;
* objects of the tests' own classes (``TEST_MODULE``), passed to the program, cross by value
  and come back updated; the tests' functions passed to it are called back here (``cb``
  replies, answered by ``cbret`` requests); the names of the tests' namespace come from
  trusted sources only (``test_namespace``).

``CandidateFault`` (a BaseException, so a test's ``except Exception`` does not swallow it) also
covers malformed or oversized replies and a candidate that died; once one happened, the test's
outcome is ``error`` whatever the test then did.

Reports, sent together when the run ends (the result of the run): ``('p', outcome, detail)``
for the program, then ``('t', i, outcome, line, detail)`` per test up to the first that did not
pass (the run ends there), outcome one of pass | fail | error | timeout; ``line`` is the test's
line that failed (0 when unknown).
"""

from __future__ import annotations

import builtins
import marshal
import os
import reprlib
import signal
import sys
from collections import Counter, OrderedDict, defaultdict, deque
from typing import Any, Dict, List, Optional

from next_jax.execution import channel, plain
from next_jax.execution.candidate import MAX_ITEMS

CONTROL_FD, PAYLOAD_FD = 4, 5
MAX_REPLY_BYTES = 32 << 20
# The name ``strict_types`` rewrites ``a == b`` to call: not an identifier, so no source (the
# program's, a test's, the setup code's) can bind or rebind it, and no program's global crosses
# under it (only the entry point does).
STRICT_EQ = "=="
TEST_MODULE = "__test__"  # __name__ of the tests' namespace; classes defined there cross by value
_RECURSION_LIMIT = sys.getrecursionlimit()  # at import, before any run


class CandidateFault(BaseException):
    """The candidate broke the protocol, died, sent what is not plain data, or an opaque
    value of its was used for more than identity."""


class TestTimeout(BaseException):
    """The per-test alarm; a BaseException so ``except Exception`` in a test does not eat it."""


def _on_alarm(signum, frame):
    raise TestTimeout()


class Candidate:
    """The judge's end of the channel to the candidate process."""

    def __init__(self, request_fd: int, reply_fd: int, modules=(),
                 max_reply_bytes: int = MAX_REPLY_BYTES):
        self.request_fd, self.reply_fd = request_fd, reply_fd
        self.max_reply_bytes = max_reply_bytes
        self.fault = ""  # set on the first fault; every later call faults at once
        self.modules = frozenset(modules)
        self._opaque_types: Dict[str, type] = {}
        # One Proxy / opaque marker per handle: the same object of the candidate's crosses as
        # the same object here (``f == f``, ``a is b`` hold as in Python).
        self._proxies: Dict[int, Any] = {}
        self._opaques: Dict[int, Any] = {}
        self.found: Dict[str, Any] = {}  # the loaded program's globals the tests may read
        self.describing = False  # while a verdict's detail is written (``_last_result``)
        self._parts: list = []  # the mutable parts of the current call's arguments
        self._sent: Dict[int, int] = {}  # objects sent by value in the current request
        # Functions of the test's passed to the program, by number (kept referenced).
        self._callbacks: Dict[int, Any] = {}
        self._callback_numbers: Dict[int, int] = {}
        self._callback_failure: Optional[BaseException] = None
        self.last: Any = _NOTHING  # the latest result, for the detail of a failed assert

    def _fail(self, why: str):
        if not self.fault:
            self.fault = why
        raise CandidateFault(why)

    def request(self, msg: Any, parts: list = ()) -> Any:
        if self.fault:
            raise CandidateFault(self.fault)
        self._parts = parts
        self._send(msg)
        while True:
            reply = self._reply()
            if reply[0] != "cb":
                break
            self._callback(reply)  # the program called a function of the test's
            self._parts = parts  # the callback may have made calls of its own
        failure, self._callback_failure = self._callback_failure, None
        if failure is not None:  # the test's own assert failed inside the program: it fails
            raise failure
        if reply[0] == "raise":  # what the call changed before it raised was updated in decoding
            raise self._exception(reply[1], reply[2])
        return reply[1], reply[2]

    def _send(self, msg: Any) -> None:
        body = None
        with plain.deep():
            safe = _marshal_safe(msg, 0)
        if safe:
            try:
                kind, body = channel.KIND_TRUSTED, marshal.dumps(msg, _MARSHAL_VERSION)
            except (ValueError, OverflowError):  # beyond marshal's own limits: as plain data
                body = None
        if body is None:
            kind = 0
            self._sent = {}
            try:
                body = plain.dumps(msg, self._judge_side)
            except plain.PlainDataError as e:
                raise TypeError(f"cannot pass this to the candidate: {e}") from None
            finally:
                self._sent = {}
        try:
            channel.write_frame(self.request_fd, kind, body)
        except OSError:
            self._fail("the candidate process is gone")

    def _reply(self) -> tuple:
        header = channel.read_exact(self.reply_fd, channel.HEADER.size)
        if header is None:
            self._fail("the candidate process ended")
        length, _ = channel.HEADER.unpack(header)
        if length > self.max_reply_bytes:
            self._fail(f"the candidate sent a reply over {self.max_reply_bytes} bytes")
        data = channel.read_exact(self.reply_fd, length) if length else b""
        if data is None:
            self._fail("the candidate process ended in the middle of a reply")
        try:
            reply = plain.loads(data, self._rebuild, max_bytes=self.max_reply_bytes)
        except (plain.PlainDataError, MemoryError) as e:
            self._fail(f"the candidate's reply is not plain data: {e}")
        if type(reply) is not tuple or not (
                len(reply) == 3 and reply[0] == "ok" or 3 <= len(reply) <= 4 and reply[0] == "raise"
                or len(reply) == 4 and reply[0] == "cb"):
            self._fail("malformed reply from the candidate")
        return reply

    def _callback(self, reply: tuple) -> None:
        """Runs a function of the test's that the program called (a key, a predicate the test
        passed it) here, on the plain data the program passed, and sends back its result or
        exception. A test's own AssertionError raised in it fails the test whatever the program
        does with it (``request``)."""
        _, number, args, kwargs = reply
        fn = self._callbacks.get(number) if type(number) is int else None
        if fn is None or type(args) is not tuple or type(kwargs) is not dict or not all(
                type(k) is str for k in kwargs):
            self._fail("malformed callback from the candidate")
        try:
            answer = ("cbret", "ok", fn(*args, **kwargs))
        except Exception as e:  # BaseExceptions (the alarm, a fault) end the test here
            if isinstance(e, AssertionError) and self._callback_failure is None:
                self._callback_failure = e
            answer = ("cbret", "raise", _builtin_name(type(e)), _describe(e))
        try:
            self._send(answer)
        except TypeError as e:  # a result that cannot cross: raised in the program
            self._send(("cbret", "raise", "TypeError", str(e)))

    def _judge_side(self, v: Any, t: type, depth: int) -> Any:
        """How the judge sends what is not plain data: the candidate's own objects by handle,
        objects of the tests' own classes by value (numbered, so shared and cyclic parts stay
        shared)."""
        if t is Proxy or isinstance(v, Opaque):
            return ["h", object.__getattribute__(v, "_handle")]
        if t is range:
            return ["r", v.start, v.stop, v.step]
        if _sent_attributes(v) is not None:
            i = self._sent.get(id(v))
            if i is not None:
                return ["O", i]
            i = self._sent[id(v)] = len(self._sent)
            return ["O", i, t.__name__, plain.encode_at(dict(vars(v)), depth + 1, self._judge_side)]
        name = getattr(v, "__name__", None)
        if type(name) is str and getattr(builtins, name, None) is v:  # len, int, sorted, ...
            return ["B", name]  # the candidate's own builtin of that name
        if callable(v):  # a function of the test's: the program calls it back here
            i = self._callback_numbers.get(id(v))
            if i is None:
                i = self._callback_numbers[id(v)] = len(self._callbacks) + 1
                self._callbacks[i] = v
            return ["F", i]
        raise plain.PlainDataError(f"{plain.type_label(t)} is not plain data")

    def load(self, program: List[bytes], names: List[str]) -> dict:
        found, _ = self.request(("load", program, names))
        if type(found) is not dict:
            self._fail("malformed load reply")
        return found

    def call(self, callee: Any, args: tuple, kwargs: dict) -> Any:
        if type(callee) is Proxy:  # by its handle, so a call of plain values can go as marshal
            callee = object.__getattribute__(callee, "_handle")
        # Numbered as the candidate numbers its copy; a reply names changed parts by number and
        # decoding it updates them in place (``_rebuild``, tag "@").
        parts = plain.mutable_parts((*args, *kwargs.values()), _sent_attributes)
        value, changed = self.request(("call", callee, args, kwargs), parts)
        if changed is not None and type(changed) is not tuple:
            self._fail("malformed call reply")
        self.last = value
        return value

    def getattr(self, handle: int, name: str) -> Any:
        value, _ = self.request(("attr", handle, name))
        self.last = value
        return value

    def op(self, name: str, handle: int, args: tuple) -> Any:
        """Python's ``str(x)``, ``len(x)``, ... of the candidate's object ``x``, asked of the
        candidate; the answer must have the type Python guarantees for it."""
        value, _ = self.request(("op", name, handle, args))
        want = _OP_RESULTS.get(name)
        if want is not None and type(value) is not want or name == "len" and value < 0:
            self._fail(f"the candidate's {name}() answered a {plain.type_label(type(value))}")
        if name == "iter" and not isinstance(value, _ITERATORS):
            self._fail("the candidate's iter() answered no iterator")
        return value

    # -- rebuilding what the candidate sent ----------------------------------------------------

    def _exception(self, name: Any, message: Any) -> BaseException:
        if type(name) is not str or type(message) is not str:
            self._fail("malformed exception from the candidate")
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            self._fail(f"the candidate raised an unknown exception type {name[:60]!r}")
        if issubclass(cls, (StopIteration, StopAsyncIteration)):
            return RuntimeError(f"the candidate raised {name}: {message}")
        if not issubclass(cls, Exception):
            return CandidateFault(f"the candidate raised {name}: {message}")
        for c in cls.__mro__:
            try:
                e = c(message)
            except Exception:  # e.g. UnicodeDecodeError needs five arguments
                continue
            e.from_candidate = True  # an AssertionError of the program is an error, not a fail
            return e
        return Exception(message)

    def _rebuild(self, tag: str, r: list, depth: int) -> Any:
        n = len(r)
        if tag == "h" and n == 3 and type(r[1]) is int and type(r[2]) is str:
            proxy = self._proxies.get(r[1])
            if proxy is None:
                proxy = self._proxies[r[1]] = Proxy(self, r[1], r[2][:200])
            return proxy
        if tag == "o" and n == 3 and type(r[1]) is int and type(r[2]) is str:
            marker = self._opaques.get(r[1])
            if marker is None:
                marker = self._opaques[r[1]] = self._opaque_type(r[2][:200])(self, r[1])
            return marker
        if tag == "@" and type(r[1]) is int and 0 <= r[1] < len(self._parts):
            # ["@", k]: part k of the call's arguments; ["@", k, tag, items...]: part k, whose
            # contents are now the value [tag, items...] (at this same depth).
            old = self._parts[r[1]]
            if n > 2:
                _update_in_place(old, plain.decode_item(r[2:], depth, self._rebuild), self)
            return old
        if tag == "r" and n == 4 and all(type(x) is int for x in r[1:]) and r[3] != 0:
            return range(r[1], r[2], r[3])
        if tag == "DD" and n == 3:  # a defaultdict: its factory a builtin type or a Proxy
            factory = r[1]
            if type(factory) is str and factory in _FACTORIES:
                factory = _FACTORIES[factory]
            elif factory is not None:
                factory = plain.decode_item(factory, depth + 1, self._rebuild)
                if type(factory) is not Proxy:
                    raise plain.PlainDataError("malformed defaultdict")
            items = plain.decode_item(r[2], depth + 1, self._rebuild)
            if type(items) is not dict:
                raise plain.PlainDataError("malformed defaultdict")
            return defaultdict(factory, items)
        if tag == "M" and n == 2 and type(r[1]) is str:
            return self._module(r[1])
        if tag == "g" and n == 4 and type(r[1]) is str and type(r[2]) is list:
            items = plain.decode_item(r[2], depth + 1, self._rebuild)
            return self._iterable(r[1], items, r[3])
        raise plain.PlainDataError(f"unknown wire tag {tag[:10]!r}")

    def _opaque_type(self, name: str) -> type:
        t = self._opaque_types.get(name)
        if t is None:
            t = self._opaque_types[name] = type(name, (Opaque,), {"__slots__": ()})
        return t

    def _module(self, name: str) -> Any:
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in self.modules:
            import importlib
            try:
                return importlib.import_module(name)
            except ImportError:
                pass
        return self._opaque_type("module")(self, 0)

    def _iterable(self, kind: str, items: list, end: Any) -> Any:
        if end == "":
            stop = None
        elif end == "more":
            stop = CandidateFault(f"the candidate's iterable yields more than {MAX_ITEMS} items")
        elif type(end) is list and len(end) == 3 and end[0] == "raise":
            stop = self._exception(end[1], end[2])
        else:
            raise plain.PlainDataError("malformed iterable end")
        if kind in ("dict_keys", "dict_values", "dict_items") and stop is None:
            if kind == "dict_keys":
                return dict.fromkeys(plain.hashable_items(items)).keys()
            if kind == "dict_values":
                return dict(enumerate(items)).values()
            if all(type(x) is tuple and len(x) == 2 for x in items):
                return dict(zip(plain.hashable_items([x[0] for x in items]),
                                [x[1] for x in items])).items()
            raise plain.PlainDataError("malformed dict items")
        gen = _replay(items, stop)
        if kind == "map":
            return map(_identity, gen)
        if kind == "filter":
            return filter(_always, gen)
        return gen


_NOTHING = object()


def _last_result(cand: Candidate) -> str:
    if cand.last is _NOTHING:
        return ""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 120
    cand.describing = True  # markers describe themselves here: no call after the test ended
    try:
        return f" (the candidate's last result: {short.repr(cand.last)})"
    except BaseException:  # be safe: a detail is not worth an error
        return ""
    finally:
        cand.describing = False


def _replay(items: list, stop: Any):
    yield from items
    if stop is not None:
        raise stop


def _identity(x):
    return x


def _always(_):
    return True


def _sent_attributes(v: Any) -> Optional[list]:
    """The attribute values of an object that crosses by value (an instance of a class the
    tests, the setup code or the task's trusted program defined), else None."""
    t = type(v)
    if type(t) is not type or t.__module__ != TEST_MODULE:
        return None
    try:
        return list(object.__getattribute__(v, "__dict__").values())
    except AttributeError:  # __slots__ only: not sent
        return None


def _update_in_place(old: Any, new: Any, cand: Candidate) -> None:
    t = type(old)
    if t in _SEQUENCE_PARTS and type(new) is t:
        old[:] = new
    elif (t is dict or t is OrderedDict) and type(new) is t:
        old.clear()
        old.update(new)
    elif t is Counter and type(new) is t:
        old.clear()
        dict.update(old, new)  # Counter.update would add counts
    elif t is set and type(new) is t:
        old.clear()
        old |= new
    elif t is deque and type(new) is t and new.maxlen == old.maxlen:
        old.clear()
        old.extend(new)
    elif _sent_attributes(old) is not None and type(new) is dict and all(
            type(k) is str for k in new):
        attrs = object.__getattribute__(old, "__dict__")
        for name in new:
            # Its data may change (Python allows any change), but not its class's methods: a
            # trusted method the test calls (``root.to_list()``) must stay the task's code.
            if name not in attrs and _is_behaviour(getattr(t, name, None)):
                cand._fail(f"a changed object of class {t.__name__!r} came back with an "
                           f"attribute {name[:60]!r} over its class's method")
        attrs.clear()
        attrs.update(new)
    else:
        cand._fail("a changed argument came back as another type")


_SEQUENCE_PARTS = (list, bytearray)
_OP_RESULTS = {"str": str, "repr": str, "format": str, "bool": bool, "len": int,
               "isinstance": bool}
_ITERATORS = (type(x for x in ()), map, filter)
_FACTORIES = {f.__name__: f for f in (int, float, str, list, dict, set, tuple, bool)}


def _is_behaviour(attr: Any) -> bool:
    return attr is not None and (callable(attr) or hasattr(type(attr), "__get__"))


class Proxy:
    """A function (or class) of the candidate: calling it is a call in the candidate process."""

    __slots__ = ("_cand", "_handle", "__name__")

    def __init__(self, cand: Candidate, handle: int, name: str):
        self._cand, self._handle, self.__name__ = cand, handle, name

    def __call__(self, *args, **kwargs):
        return self._cand.call(self, args, kwargs)

    def __getattr__(self, name):  # a class attribute, a method, f.__doc__: read by the candidate
        if name in Proxy.__slots__:
            raise AttributeError(name)
        return self._cand.getattr(self._handle, name)

    def __instancecheck__(self, obj):  # isinstance(x, Cls) with the program's class: its answer
        return self._cand.op("isinstance", self._handle, (obj,))

    def __repr__(self):
        return f"<candidate's {self.__name__}>"


class Opaque:
    """An object of the candidate's own classes; see the module doc for what it supports."""

    __slots__ = ("_cand", "_handle")

    def __init__(self, cand: Candidate, handle: int):
        object.__setattr__(self, "_cand", cand)
        object.__setattr__(self, "_handle", handle)

    def _misuse(self, what: str):
        cand = object.__getattribute__(self, "_cand")
        name = type(self).__name__
        cand._fail(f"{what} on an object of the candidate's class {name!r}: comparing such "
                   "objects would run the program's own code in the judge; only `is`, "
                   "type(x).__name__, attributes, str(), len(), truth, iteration and x[key] "
                   "are supported on them")

    def _op(self, name: str, *args):
        return object.__getattribute__(self, "_cand").op(
            name, object.__getattribute__(self, "_handle"), args)

    # Comparisons and hashing would be the program's code judging its own answer (an object
    # equal to everything, a container holding everything): refused.
    def __eq__(self, other):
        self._misuse("a comparison")

    __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __eq__

    def __hash__(self):
        self._misuse("hashing")

    def __contains__(self, item):
        self._misuse("`in`")

    # What the program answers about its own object, as a value the test then judges: asked
    # of the candidate, as Python would ask the object (its __str__, __len__, __bool__, ...).
    def __str__(self):
        return self._op("str")

    def __format__(self, spec):
        return self._op("format", spec)

    def __bool__(self):
        return self._op("bool")

    def __len__(self):
        return self._op("len")

    def __iter__(self):
        return self._op("iter")

    def __getitem__(self, key):
        return self._op("getitem", key)

    def __getattr__(self, name):
        # Read by the candidate; the value crosses as any result does (plain data, a method as a
        # Proxy, another object as a marker), so no object of the program's runs here.
        return object.__getattribute__(self, "_cand").getattr(
            object.__getattribute__(self, "_handle"), name)

    def __setattr__(self, name, value):
        self._misuse(f"setting attribute {name!r}")

    def __repr__(self):
        cand = object.__getattribute__(self, "_cand")
        if not cand.fault and not cand.describing:
            return self._op("repr")
        return f"<object of the candidate's class {type(self).__name__}>"


# Requests of exact builtin values travel as marshal (version 2: no shared references, so
# two equal arguments arrive as two objects, as with plain data); the candidate rebuilds them
# with marshal's C code instead of the plain-data decoder, which guards the judge only.
_MARSHAL_VERSION = 2
_MARSHAL_SCALARS = frozenset((type(None), bool, int, float, complex, str, bytes))
_MARSHAL_CONTAINERS = frozenset((list, tuple, set, frozenset))


def _marshal_safe(v: Any, depth: int) -> bool:
    """Whether marshal carries ``v`` exactly as plain data would: exact builtin types only
    (marshal would turn a bytearray into bytes, and cannot carry handles or ranges), nested no
    deeper than plain data allows (deeper values take the plain path and its error)."""
    t = type(v)
    if t in _MARSHAL_SCALARS:
        return True
    if depth >= plain.MAX_DEPTH:
        return False
    if t is dict:
        v = [*v.keys(), *v.values()]
    elif t not in _MARSHAL_CONTAINERS:
        return False
    if len(v) > 8 and set(map(type, v)) <= _MARSHAL_SCALARS:
        return True
    for x in v:
        if type(x) not in _MARSHAL_SCALARS and not _marshal_safe(x, depth + 1):
            return False
    return True


# -- the judge target -----------------------------------------------------------------------


def strict_eq(a: Any, b: Any) -> bool:
    """Equality that also requires the same type at every level of the two values (two
    namedtuple classes of the same name and fields count as one: the judge rebuilds a
    program's namedtuple with a class of its own); an OrderedDict's order counts."""
    if type(a) is not type(b) and not _same_namedtuple(type(a), type(b)):
        return False
    if isinstance(a, (list, tuple, deque)):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if type(a) is OrderedDict and list(a) != list(b):
            return False
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return a == b and {type(x) for x in a} == {type(x) for x in b}
    return a == b


def _same_namedtuple(a: type, b: type) -> bool:
    fields = plain.namedtuple_fields(a)
    return fields is not None and fields == plain.namedtuple_fields(b) and a.__name__ == b.__name__


def _builtin_name(t: type) -> str:
    for c in t.__mro__:
        if c.__module__ == "builtins" and getattr(builtins, c.__name__, None) is c:
            return c.__name__
    return "Exception"


def _describe(e: BaseException) -> str:
    if isinstance(e, TestTimeout):
        return "ran past the per-test timeout"
    try:
        text = str(e)
    except BaseException:
        text = "<unprintable>"
    name = plain.type_label(type(e))
    return (f"{name}: {text}" if text else name)[:1000]


def _failing_line(e: BaseException, filename: str) -> int:
    line, tb = 0, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _arm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def serve(_payload: Any) -> None:
    """Sandbox target of a worker's judge process: one judged run after another.

    For each run the worker sends, on the control socket (descriptor 4), the run's number and
    the two pipe ends to that run's fresh candidate process, then the payload on descriptor 5.
    The judge runs the tests (``run_tests``) and ends the run with one result frame: (run
    number, reports). It holds
    no state between runs but imported modules; the worker replaces it after a timeout.
    """
    import marshal
    import socket
    control = socket.socket(fileno=CONTROL_FD)
    signal.signal(signal.SIGALRM, _on_alarm)
    while True:
        msg, fds, _, _ = socket.recv_fds(control, 16, 2)
        if not msg:
            return None
        try:
            frame = channel.read_frame(PAYLOAD_FD)
            if frame is None:
                return None
            reports = run_tests(marshal.loads(frame[1]), Candidate(*fds[:2]))
        finally:
            for fd in fds:
                os.close(fd)
        channel.write_frame(3, channel.KIND_RESULT, plain.dumps((int(msg), reports)))


def test_namespace(payload: dict, cand: Candidate) -> Dict[str, Any]:
    """The tests' namespace, built from trusted sources only (in this order, later ones win):

    * the judge's own builtins; modules are the judge's (tests import them here);
    * ``trusted``: the task's trusted programs (its reference fix, original code, a description
      that is code; last choice first, so the first choice wins), run here when the tests read
      a helper one defines (a HumanEval prompt's ``encode_cyclic``);
    * ``names`` (the entry point): the candidate's object (a Proxy), and nothing else of the
      candidate's. Where the program lacks it, the trusted program's definition is removed too,
      so a test never runs the reference in the candidate's place;
    * ``setup``: the task's setup code, run here (its objects cross to the candidate by value);
    * the strict equality of ``strict_types``, under a name no source can spell.

    ``cand.found``: the candidate's globals for ``names`` (``Candidate.load``).
    """
    ns: Dict[str, Any] = {"__name__": TEST_MODULE, "__builtins__": builtins}
    for code in payload.get("trusted", ()):
        exec(marshal.loads(code), ns)  # noqa: S102 (dataset code, trusted as the tests are)
    for name in payload["names"]:
        if name in cand.found:
            ns[name] = cand.found[name]
        else:
            ns.pop(name, None)
    for code in payload.get("setup", ()):
        exec(marshal.loads(code), ns)  # noqa: S102
    ns[STRICT_EQ] = strict_eq
    return ns


def run_tests(payload: dict, cand: Candidate) -> list:
    """Runs one sample's tests (``_run_tests``) with room for values as deep as can cross:
    comparing two tries of depth 1,000 recurses in C once per level, as deep as decoding them."""
    plain.deep.reset(_RECURSION_LIMIT)  # an earlier run's alarm may have cut a use short
    with plain.deep():
        return _run_tests(payload, cand)


def _run_tests(payload: dict, cand: Candidate) -> list:
    """Runs one sample's tests against ``cand``; returns the reports. payload: {'program':
    [marshal code], 'tests': [marshal code], 'names': [the entry point: names the candidate's
    objects are taken for], 'trusted': [marshal code], 'setup': [marshal code], 'timeout': s,
    'modules': [importable non-stdlib modules]} (see ``test_namespace``)."""
    timeout = float(payload["timeout"])
    reports: list = []
    cand.modules = frozenset(payload.get("modules", ()))
    try:
        _arm(timeout)
        cand.found = cand.load(payload["program"], payload["names"])
        _disarm()
    except BaseException as e:
        _disarm()
        kind = "timeout" if isinstance(e, TestTimeout) else "error"
        reports.append(("p", kind, _describe(e)))
        return reports
    try:
        _arm(timeout)
        ns = test_namespace(payload, cand)
        _disarm()
    except BaseException as e:
        _disarm()
        kind = "timeout" if isinstance(e, TestTimeout) else "error"
        where = "the task's trusted program or setup code"
        reports.append(("p", kind, cand.fault or f"{where}: {_describe(e)}"))
        return reports
    reports.append(("p", "ok", ""))
    for i, code in enumerate(payload["tests"]):
        filename = f"<test {i}>"
        cand.last = _NOTHING
        line, detail = 0, ""
        try:
            _arm(timeout)
            exec(marshal.loads(code), ns)  # noqa: S102 (the judge's sandboxed process)
            _disarm()
            outcome = "pass"
        except BaseException as e:
            _disarm()
            line = _failing_line(e, filename)
            outcome = ("timeout" if isinstance(e, TestTimeout) else
                       "fail" if isinstance(e, AssertionError) and not cand.fault
                       and not getattr(e, "from_candidate", False) else "error")
            detail = cand.fault or _describe(e)
            if outcome == "fail":
                detail += _last_result(cand)
        if cand.fault and outcome == "pass":
            outcome, detail = "error", cand.fault
        reports.append(("t", i, outcome, line, detail))
        if outcome != "pass":
            # The first test that did not pass decides the verdict (``checker.judge_verdict``);
            # later tests could change nothing but the run's time.
            break
    return reports
