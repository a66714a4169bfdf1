"""Plain data: the only kind of value that crosses from a sandboxed child to a trusted process.

A candidate program controls every byte its process writes, so whatever it sends must be rebuilt
by code that trusts nothing about it. Values are restricted to exact builtin types (no
subclasses, no foreign objects: an ``int`` subclass whose ``__eq__`` is always true, or
``unittest.mock.ANY``, is refused at the source and could not be rebuilt at the destination):

    None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset

The wire form is JSON (whose decoder is memory-safe on hostile input, unlike ``marshal`` or
``pickle``) with every container tagged, so a decoded value has exactly the types that were
encoded: ``[tag, ...]`` where tag is one of ``l t s f d b c i`` (list, tuple, set, frozenset, dict
as flat key/value pairs, bytes as hex, complex as (re, im), int too long for a JSON number as
hex). Bare JSON strings, numbers, true/false/null are str, int/float, bool and None.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

# Bound at import: a sandboxed program that patches builtins must not change this module.
from builtins import bytes, complex, dict, float, frozenset, hex, int, list, set, str, tuple, type  # noqa: E402,A004

MAX_DEPTH = 200


class PlainDataError(ValueError):
    """A value that is not plain data, or bytes that do not decode to plain data."""


_SCALARS = (type(None), bool, str, float)
_BIG_INT = 1 << 4000  # json (via int->str) refuses ints above ~4300 digits


def to_wire(value: Any, convert: Optional[Callable[[Any, type], Any]] = None) -> Any:
    """Returns a JSON-ready form of ``value``; raises PlainDataError on any non-plain part.

    ``convert(v, type(v))``, when given, is asked for a builtin stand-in of each value that is not
    of an exact builtin type (the sandbox harness's policy for subclasses and foreign objects);
    without it such values are refused.
    """
    return _encode(value, 0, convert)


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
    if t is list:
        return ["l", *[_encode(x, d, convert) for x in v]]
    if t is tuple:
        return ["t", *[_encode(x, d, convert) for x in v]]
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
    if t is complex:
        return ["c", v.real, v.imag]
    if convert is not None:
        return _encode(convert(v, t), depth, convert)
    raise PlainDataError(f"{_type_label(v)} is not plain data (builtin types only)")


def _type_label(v: Any) -> str:
    t = type(v)
    try:
        return f"{t.__module__}.{t.__qualname__}"
    except Exception:  # a hostile metaclass may raise here; the name is only for messages
        return "an object of unknown type"


def dumps(value: Any) -> bytes:
    """Encodes plain data to bytes (raises PlainDataError for anything else)."""
    return json.dumps(to_wire(value), separators=(",", ":")).encode("ascii")


def loads(data: bytes) -> Any:
    """Rebuilds plain data from untrusted bytes; raises PlainDataError on anything malformed."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise PlainDataError(f"not valid wire data: {e.__class__.__name__}") from None
    return from_wire(raw)


def from_wire(raw: Any) -> Any:
    try:
        return _decode(raw, 0)
    except PlainDataError:
        raise
    except (TypeError, ValueError, RecursionError, OverflowError) as e:
        raise PlainDataError(f"malformed wire data: {e.__class__.__name__}: {e}") from None


def _decode(r: Any, depth: int) -> Any:
    t = type(r)
    if t in _SCALARS or t is int:
        return r
    if t is not list or not r or type(r[0]) is not str:
        raise PlainDataError(f"unexpected wire element of type {t.__name__}")
    if depth >= MAX_DEPTH:
        raise PlainDataError(f"nested deeper than {MAX_DEPTH} levels")
    tag, items, d = r[0], r[1:], depth + 1
    if tag == "l":
        return [_decode(x, d) for x in items]
    if tag == "t":
        return tuple(_decode(x, d) for x in items)
    if tag == "s":
        return {_decode(x, d) for x in items}  # unhashable items raise TypeError -> refused
    if tag == "f":
        return frozenset(_decode(x, d) for x in items)
    if tag == "d":
        if len(items) % 2:
            raise PlainDataError("dict with an odd number of key/value items")
        out = {}
        for i in range(0, len(items), 2):
            out[_decode(items[i], d)] = _decode(items[i + 1], d)
        return out
    if tag == "b" and len(items) == 1 and type(items[0]) is str:
        return bytes.fromhex(items[0])
    if tag == "c" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(items[0], items[1])
    if tag == "i" and len(items) == 1 and type(items[0]) is str:
        return int(items[0], 16)
    raise PlainDataError(f"unknown wire tag {tag[:10]!r}")


def is_plain(value: Any) -> bool:
    try:
        to_wire(value)
    except PlainDataError:
        return False
    return True
