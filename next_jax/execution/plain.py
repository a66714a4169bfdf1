"""Plain data: the only kind of value that crosses from a sandboxed process to a more trusted one.

A candidate program controls every byte its process writes, so whatever it sends is rebuilt by
code that trusts nothing about it. Values are restricted to exact builtin and exact-number types
(no subclasses, no foreign objects: an ``int`` subclass whose ``__eq__`` is always true, or
``unittest.mock.ANY``, is refused at the source and could not be rebuilt at the destination):

    None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset,
    fractions.Fraction, decimal.Decimal, collections.OrderedDict, collections.Counter,
    collections.deque, namedtuples

(OrderedDict, Counter and deque because Python's ``==`` on them is not a dict's or a list's: an
OrderedDict compares its order with another OrderedDict, a Counter ignores zero counts, a deque
never equals a list; a namedtuple compares as a tuple but its fields are read by name, so it is
rebuilt as a namedtuple made here with the same type name and fields). The wire form is JSON
arrays (no JSON objects) with every container tagged, so a decoded value has exactly the types
that were encoded: ``[tag, ...]`` where tag is one of ``l t s f d b y c i q m D C Q N`` (list,
tuple, set, frozenset, dict as flat key/value pairs, bytes and bytearray as hex, complex as (re,
im), an int too long for a JSON number as hex, Fraction as (numerator, denominator), Decimal as
its string, OrderedDict and Counter as a dict's pairs, deque as (maxlen, items...), a namedtuple
as (type name, field names, items...)). Bare JSON strings, numbers, true/false/null are str,
int/float, bool and None. Callers may add tags of their own (``convert`` to encode, ``extra`` to
decode: the judge's handles and iterables).

Decoding is linear in the input and bounded: the byte length is capped before anything is
parsed; input holding a ``{`` is refused unparsed (so the JSON parser never builds an object and
never hashes a key of ours); the encoder writes ``{``/``}`` inside strings as escapes, so honest
data never holds one. Sets, frozensets and dict keys are hashed only after every element was
rebuilt as a plain value, and a collection whose elements share one hash value more than a few
times (a hash-flooding set, quadratic to build) is refused before it is built.

Values may nest ``MAX_DEPTH`` (3,000) levels deep: a trie of 1,000-letter words whose nodes are
two dicts deep (children, then a child) crosses with room to spare. Encoding and decoding run
with the interpreter's recursion limit raised by enough for that depth (``deep``) and put back
afterwards, so neither a program's own limit nor the default one refuses a deep honest value.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque, namedtuple
from json import decoder as _json_decoder, encoder as _json_encoder, scanner as _json_scanner
from typing import Any, Callable, Optional

# Bound at import: a sandboxed program that patches builtins must not change this module.
from builtins import (  # noqa: E402,A004
    bytearray, bytes, complex, dict, float, frozenset, hash, hex, int, len, list, max, set, str,
    tuple, type,
)
from decimal import Decimal
from fractions import Fraction
from sys import getrecursionlimit, setrecursionlimit

MAX_DEPTH = 3000
# Frames one nesting level may take while encoding or decoding (the Python decoder takes up to
# four through a caller's tags, json's C code one), plus slack for the frames of the caller.
_RECURSION_ROOM = 5 * MAX_DEPTH + 200
MAX_BYTES = 64 << 20
_SAME_HASH_LIMIT = 8  # distinct elements allowed to share one hash value in a set or dict
_CHECK_HASHES_FROM = 32  # smaller collections cannot take long to build whatever their hashes


class PlainDataError(ValueError):
    """A value that is not plain data, or bytes that do not decode to plain data."""


_SCALARS = (type(None), bool, str, float)
_BIG_INT = 1 << 4000  # json (via int->str) refuses ints above ~4300 digits
# Flat containers (every element one of these exact types) are encoded and rebuilt in one step:
# their elements are their own wire form (ints checked against _BIG_INT first).
_FLAT = frozenset(_SCALARS)
_FLAT_WIRE = frozenset(_SCALARS + (int,))
_NUMBERS = frozenset((int, float, bool))


class deep:
    """Context manager: the recursion limit raised so that ``MAX_DEPTH`` levels fit above the
    current frame, and put back on exit; nested uses raise it once (the outermost)."""

    __slots__ = ("limit",)
    _active = [0]

    def __enter__(self):
        if not self._active[0]:
            self.limit = getrecursionlimit()
            setrecursionlimit(self.limit + _RECURSION_ROOM)
        self._active[0] += 1
        return self

    def __exit__(self, *exc):
        self._active[0] -= 1
        if not self._active[0]:
            setrecursionlimit(self.limit)
        return False

    @classmethod
    def reset(cls, limit: int) -> None:
        """Forgets any use that a signal cut short (between raising the limit and counting
        the use) and sets ``limit``: called where a process starts a new unit of work."""
        cls._active[0] = 0
        setrecursionlimit(limit)


def to_wire(value: Any, convert: Optional[Callable[[Any, type, int], Any]] = None) -> Any:
    """Returns a JSON-ready form of ``value``; raises PlainDataError on any non-plain part.

    ``convert(v, type(v), depth)``, when given, returns the wire form of each value that is not
    of a plain type (a policy for subclasses and foreign objects); without it they are refused.
    """
    with deep():
        return _encode(value, 0, convert)


def encode_at(value: Any, depth: int, convert=None) -> Any:
    """``to_wire`` for a value found ``depth`` levels down (a ``convert`` hook's own parts);
    called inside ``deep()``."""
    return _encode(value, depth, convert)


def _encode(v: Any, depth: int, convert=None) -> Any:
    t = type(v)
    if t in _SCALARS:
        return v
    if t is int:
        if -_BIG_INT < v < _BIG_INT:
            return v
        return ["i", hex(v)]
    if depth >= MAX_DEPTH:
        raise PlainDataError(f"nested deeper than {MAX_DEPTH} levels")
    d = depth + 1
    if t is list or t is tuple:
        if _is_flat(v):
            return ["l" if t is list else "t", *v]
        return ["l" if t is list else "t", *[_encode(x, d, convert) for x in v]]
    if t is dict:
        out = ["d"]
        for k, x in v.items():
            out.append(_encode(k, d, convert))
            out.append(_encode(x, d, convert))
        return out
    if t is set:
        return ["s", *[_encode(x, d, convert) for x in v]]
    if t is frozenset:
        return ["f", *[_encode(x, d, convert) for x in v]]
    if t is bytes:
        return ["b", v.hex()]
    if t is bytearray:
        return ["y", v.hex()]
    if t is complex:
        return ["c", v.real, v.imag]
    if t is Fraction:
        return ["q", _encode(v.numerator, d), _encode(v.denominator, d)]
    if t is Decimal:
        return ["m", str(v)]
    if t is OrderedDict or t is Counter:
        out = ["D" if t is OrderedDict else "C"]
        for k, x in v.items():
            out.append(_encode(k, d, convert))
            out.append(_encode(x, d, convert))
        return out
    if t is deque:
        return ["Q", v.maxlen, *[_encode(x, d, convert) for x in v]]
    fields = namedtuple_fields(t)
    if fields is not None:
        items = [_encode(x, d, convert) for x in tuple.__iter__(v)]
        return ["N", t.__name__, ["t", *fields], *items]
    if convert is not None:
        return convert(v, t, depth)
    raise PlainDataError(f"{type_label(t)} is not plain data (builtin types only)")


def _is_flat(v) -> bool:
    """Whether every element of ``v`` is a scalar that is its own wire form."""
    kinds = set(map(type, v))
    if kinds <= _FLAT:
        return True
    if int not in kinds or not kinds <= _NUMBERS:
        return False
    return -_BIG_INT < min(v) and max(v) < _BIG_INT  # floats may widen the range: then slow


def type_label(t: type) -> str:
    try:
        return f"{t.__module__}.{t.__qualname__}".removeprefix("builtins.")
    except Exception:  # a hostile metaclass may raise here; the name is only for messages
        return "an object of unknown type"


def _make_codec():
    """json's C encoder and scanner without json's Python layer, whose isinstance/len calls a
    sandboxed program could patch (the candidate encodes in its own process)."""
    if _json_encoder.c_make_encoder is None or _json_scanner.c_make_scanner is None:  # pragma: no cover
        return (lambda obj: json.dumps(obj, separators=(",", ":")),
                lambda text: (json.loads(text), len(text)))
    encode = _json_encoder.c_make_encoder(None, None, _json_encoder.encode_basestring_ascii, None,
                                          ":", ",", False, False, True)
    scan = _json_scanner.c_make_scanner(_json_decoder.JSONDecoder())
    return (lambda obj: "".join(encode(obj, 0))), (lambda text: scan(text, 0))


_dumps_json, _scan_json = _make_codec()


def wire_bytes(wire: Any) -> bytes:
    """Serialises a wire form; ``{``/``}`` (only ever inside strings) are written as escapes."""
    with deep():
        text = _dumps_json(wire)
    if "{" in text or "}" in text:
        text = text.replace("{", "\\u007b").replace("}", "\\u007d")
    return text.encode("ascii")


def dumps(value: Any, convert=None) -> bytes:
    """Encodes plain data to bytes (raises PlainDataError for anything else)."""
    return wire_bytes(to_wire(value, convert))


def loads(data: bytes, extra: Optional[Callable[[str, list, int], Any]] = None,
          max_bytes: int = MAX_BYTES) -> Any:
    """Rebuilds plain data from untrusted bytes; raises PlainDataError on anything malformed.

    ``extra(tag, items, depth)`` rebuilds caller-defined tags (``decode_item`` for their items).
    """
    if type(data) is not bytes:
        raise PlainDataError("wire data must be bytes")
    if len(data) > max_bytes:
        raise PlainDataError(f"wire data over {max_bytes} bytes")
    if data.find(b"{") >= 0:
        raise PlainDataError("wire data holds a JSON object")
    with deep():
        try:
            text = data.decode("ascii")
            raw, end = _scan_json(text)
        except (ValueError, RecursionError, UnicodeDecodeError, StopIteration) as e:
            raise PlainDataError(f"not valid wire data: {e.__class__.__name__}") from None
        if end != len(text):
            raise PlainDataError("not valid wire data: extra data")
        return _from_wire(raw, extra)


def from_wire(raw: Any, extra=None) -> Any:
    with deep():
        return _from_wire(raw, extra)


def _from_wire(raw: Any, extra=None) -> Any:
    try:
        return decode_item(raw, 0, extra)
    except PlainDataError:
        raise
    except (TypeError, ValueError, RecursionError, OverflowError, ArithmeticError) as e:
        raise PlainDataError(f"malformed wire data: {e.__class__.__name__}: {e}") from None


def hashable_items(items: list) -> list:
    """``items`` if they can be put in a set in linear time; raises PlainDataError otherwise."""
    if len(items) >= _CHECK_HASHES_FROM:
        counts: dict = {}
        for x in items:
            h = hash(x)  # every element is a rebuilt plain value: its hash is stdlib code
            n = counts.get(h, 0) + 1  # hash values are ints, which hash to themselves
            if n > _SAME_HASH_LIMIT:
                raise PlainDataError("a set or dict whose elements share one hash value")
            counts[h] = n
    return items


def namedtuple_fields(t: type) -> Optional[tuple]:
    """The field names of a namedtuple class (made by ``collections.namedtuple`` or
    ``typing.NamedTuple``, or a subclass of one), else None."""
    if not issubclass(t, tuple):
        return None
    try:
        fields = getattr(t, "_fields", None)
    except Exception:
        return None
    if type(fields) is tuple and all(type(f) is str for f in fields) and type(t.__name__) is str:
        return fields
    return None


_NAMEDTUPLES: dict = {}  # (name, fields) -> the class rebuilt here; bounded
_MAX_NAMEDTUPLES = 256


def _namedtuple_class(name: Any, fields: Any) -> type:
    if type(name) is not str or type(fields) is not tuple or len(name) > 200 or len(fields) > 1000:
        raise PlainDataError("malformed namedtuple")
    key = (name, fields)
    cls = _NAMEDTUPLES.get(key)
    if cls is None:
        try:  # validates the names (identifiers, not keywords, no duplicates, no leading "_")
            cls = namedtuple(name, fields)
        except (ValueError, TypeError) as e:
            raise PlainDataError(f"malformed namedtuple: {e}") from None
        if len(_NAMEDTUPLES) < _MAX_NAMEDTUPLES:
            _NAMEDTUPLES[key] = cls
    return cls


# Mutable values a call may change in place, and the values a walk looks inside.
MUTABLE_TYPES = frozenset((list, dict, set, bytearray, OrderedDict, Counter, deque))
_NESTING_TYPES = frozenset((list, tuple, dict, OrderedDict, Counter, deque))
_MAPPING_TYPES = frozenset((dict, OrderedDict, Counter))
LEAF_TYPES = frozenset(_SCALARS + (int, complex, bytes, Fraction, Decimal, range))


def mutable_parts(roots: Any, attributes: Callable[[Any], Optional[list]]) -> list:
    """The mutable parts of ``roots``, in pre-order (the numbering by which a judge and its
    candidate name the parts of a call's arguments; each side walks its own copy the same way).

    Lists, tuples, the values of dicts and deques are walked; every list, dict, set, bytearray,
    OrderedDict, Counter and deque is a part each time it is met; so is an object for which
    ``attributes(obj)`` returns its attribute values (an object sent by value), once, its
    attribute values walked. Iterative: as deep as the values themselves.
    """
    out: list = []
    for v in roots:  # the common case first: arguments that are scalars or flat containers
        t = type(v)
        if t in LEAF_TYPES:
            continue
        if t in MUTABLE_TYPES and (t is set or t is bytearray or set(
                map(type, v.values() if t in _MAPPING_TYPES else v)) <= LEAF_TYPES):
            out.append(v)
            continue
        out = []
        break
    else:
        return out
    seen: set = set()
    stack = [roots]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in MUTABLE_TYPES:
            out.append(v)
        if t in _NESTING_TYPES:
            children = v.values() if t in _MAPPING_TYPES else v
            if set(map(type, children)) <= LEAF_TYPES:
                continue
            stack.extend(reversed([x for x in children if type(x) not in LEAF_TYPES]))
        elif t not in MUTABLE_TYPES and t not in LEAF_TYPES and id(v) not in seen:
            values = attributes(v)
            if values is not None:
                seen.add(id(v))
                out.append(v)
                stack.extend(reversed(values))
    return out


_SEQUENCES = frozenset("ltsf")
_MAPPINGS = {"d": dict, "D": OrderedDict, "C": Counter}


def decode_item(r: Any, depth: int, extra=None) -> Any:
    t = type(r)
    if t in _SCALARS or t is int:
        return r
    if t is not list or not r or type(r[0]) is not str:
        raise PlainDataError(f"unexpected wire element of type {t.__name__}")
    if depth >= MAX_DEPTH:
        raise PlainDataError(f"nested deeper than {MAX_DEPTH} levels")
    tag, d = r[0], depth + 1
    n = len(r)
    if tag in _SEQUENCES:
        items = r[1:]
        if not set(map(type, items)) <= _FLAT_WIRE:  # else each element is already its value
            items = [decode_item(r[i], d, extra) for i in range(1, n)]
        if tag == "l":
            return items
        if tag == "t":
            return tuple(items)
        return (set if tag == "s" else frozenset)(hashable_items(items))
    if tag in _MAPPINGS:
        if n % 2 == 0:
            raise PlainDataError("dict with an odd number of key/value items")
        keys = hashable_items([decode_item(r[i], d, extra) for i in range(1, n, 2)])
        values = [decode_item(r[i], d, extra) for i in range(2, n, 2)]
        out = {} if tag == "d" else _MAPPINGS[tag]()
        for i in range(len(keys)):
            out[keys[i]] = values[i]
        return out
    if tag == "N" and n >= 3:
        cls = _namedtuple_class(r[1], decode_item(r[2], d))
        items = [decode_item(r[i], d, extra) for i in range(3, n)]
        if len(items) != len(cls._fields):
            raise PlainDataError("a namedtuple with another number of items than fields")
        return cls._make(items)
    if tag == "Q" and n >= 2 and (r[1] is None or (type(r[1]) is int and r[1] >= 0)):
        return deque([decode_item(r[i], d, extra) for i in range(2, n)], r[1])
    if tag in ("b", "y") and n == 2 and type(r[1]) is str:
        return (bytes if tag == "b" else bytearray).fromhex(r[1])
    if tag == "c" and n == 3 and type(r[1]) in (int, float) and type(r[2]) in (int, float):
        return complex(r[1], r[2])
    if tag == "i" and n == 2 and type(r[1]) is str and len(r[1]) < 100_000:
        return int(r[1], 16)
    if tag == "q" and n == 3:
        num, den = decode_item(r[1], d), decode_item(r[2], d)
        if type(num) is not int or type(den) is not int or den <= 0:
            raise PlainDataError("malformed Fraction")
        return Fraction(num, den)
    if tag == "m" and n == 2 and type(r[1]) is str and len(r[1]) < 200:
        return Decimal(r[1])
    if extra is not None:
        return extra(tag, r, depth)
    raise PlainDataError(f"unknown wire tag {tag[:10]!r}")
