"""The checker's target inside the sandboxed child: runs a fix and its rewritten tests.

Nothing here decides a verdict. It runs the program (the setup code's imports, the fix, the
setup code), then each test, and reports what happened to the parent. Reports are buffered and
sent as lists (one ``emit`` per test, or per 256 reports), each report one of:

    ('p', 'ok' | 'fail' | 'error' | 'timeout', text)   the program itself ran (or did not)
    ('s', i)                                            test i starts
    ('a', site, [(tag, value), ...])                    an assert site's hole values
    ('d', i) | ('x', i, 'fail' | 'error' | 'timeout', text)   test i finished / raised

A hole's (tag, value) is ('v', plain value), ('e', 'ExcType: message') when evaluating it
raised, or ('n', why) when its value is not plain data. Values become plain data by this policy:
exact builtin values as they are; instances of subclasses of builtin types (namedtuple, Counter,
defaultdict, IntEnum, numpy's float64, or a hostile ``int`` subclass whose ``__eq__`` is always
true) as their base type's data; numpy scalars through ``.item()``; anything else refused. The
parent then judges the data, never the object's own idea of equality. Every step here runs in
the candidate's process and may be subverted by it; the point is that subverting it cannot
produce a pass (see ``splitting``).
"""

from __future__ import annotations

import builtins
import marshal
import signal
import sys
import types
from typing import Any, List

from next_jax.execution.channel import emit_wire
from next_jax.execution import plain
from next_jax.execution.plain import PlainDataError

# Bound at import (in the worker, before any candidate code): a program that patches builtins
# must not change how its own values are read or reported.
from builtins import (  # noqa: E402,A004
    AssertionError, BaseException, Exception, RecursionError, bytes, complex, dict, float,
    frozenset, int, isinstance, issubclass, len, list, memoryview, set, slice, str, tuple,
    type,
)

TARGET = "next_jax.execution.harness:run_tests"
ASSERT_HOOK = "__nj_assert__"  # the name rewritten asserts call (see splitting)
MODULE_NAME = "__solution__"

_FLUSH_EVERY = 256


class TestTimeout(BaseException):
    """Raised by the per-test alarm; a BaseException so ``except Exception`` does not eat it."""


def _on_alarm(signum, frame):
    raise TestTimeout()


def to_wire(v: Any) -> Any:
    """``plain.to_wire`` with the conversion policy of the module doc."""
    return plain.to_wire(v, _as_builtin)


def _as_builtin(v: Any, t: type) -> Any:
    """The builtin-typed data inside an instance of a subclass of a builtin type."""
    if issubclass(t, int):
        return int.__index__(v)  # bool cannot be subclassed, so this is never a bool
    if issubclass(t, float):
        return float.__float__(v)
    if issubclass(t, str):
        return str.__str__(v)
    if issubclass(t, bytes):
        return bytes(memoryview(v))
    if issubclass(t, complex):
        return complex(complex.real.__get__(v), complex.imag.__get__(v))
    if issubclass(t, tuple):
        return tuple.__getitem__(v, slice(None))
    if issubclass(t, list):
        return list.copy(v)
    if issubclass(t, dict):
        return dict.copy(v)
    if issubclass(t, set):
        return set.copy(v)
    if issubclass(t, frozenset):
        return frozenset.copy(v)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, np.generic) and t.__module__ == "numpy":
        item = v.item()
        if type(item) is not t:
            return item
    raise PlainDataError(f"a value of type {_type_name(t)} is not plain data")


def _type_name(t: type) -> str:
    try:
        return f"{t.__module__}.{t.__qualname__}".removeprefix("builtins.")
    except Exception:
        return "<unknown type>"


def _describe(e: BaseException) -> str:
    if isinstance(e, TestTimeout):
        return "ran past the per-test timeout"
    try:
        text = str(e)
    except BaseException:
        text = "<unprintable>"
    return f"{_type_name(type(e))}: {text}"[:1000]


def _kind(e: BaseException) -> str:
    if isinstance(e, TestTimeout):
        return "timeout"
    if isinstance(e, AssertionError):
        return "fail"
    return "error"


_reports: List[Any] = []  # wire-form reports not sent yet


def _report(wire: Any) -> None:
    _reports.append(wire)
    if len(_reports) >= _FLUSH_EVERY:
        _flush()


def _flush() -> None:
    if _reports:
        batch = ["l", *_reports]
        _reports.clear()
        emit_wire(batch)


def _assert_hook(site: int, *holes) -> None:
    values = ["l"]
    for hole in holes:
        try:
            value = hole()
        except Exception as e:  # BaseException (timeouts, SystemExit) ends the test instead
            values.append(["t", "e", _describe(e)])
            continue
        try:
            values.append(["t", "v", to_wire(value)])
        except (PlainDataError, RecursionError) as e:
            values.append(["t", "n", str(e)])
        except Exception as e:  # a hostile subclass can raise while being copied
            values.append(["t", "n", f"value could not be read as plain data: {_describe(e)}"])
    _report(["t", "a", site, values])


def _arm(seconds: float) -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def run_tests(payload: dict) -> None:
    """payload: {'program': [marshal code, ...], 'tests': [marshal code, ...], 'timeout': s}."""
    timeout = float(payload["timeout"])
    module = types.ModuleType(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    ns = module.__dict__
    ns["__builtins__"] = builtins
    ns[ASSERT_HOOK] = _assert_hook
    try:
        _arm(timeout)
        for code in payload["program"]:
            exec(marshal.loads(code), ns)  # noqa: S102 (this is the sandboxed child)
        _disarm()
    except BaseException as e:
        _disarm()
        _report(["t", "p", _kind(e), _describe(e)])
        _flush()
        return None
    _report(["t", "p", "ok", ""])
    for i, code in enumerate(payload["tests"]):
        _report(["t", "s", i])
        if i == 0:
            _flush()  # so a crash in the tests is not taken for one in the program
        try:
            ns[ASSERT_HOOK] = _assert_hook
            _arm(timeout)
            exec(marshal.loads(code), ns)  # noqa: S102
            _disarm()
        except BaseException as e:
            _disarm()
            kind = _kind(e)
            _report(["t", "x", i, kind, _describe(e)])
            _flush()
            if kind == "timeout":
                break
            continue
        _report(["t", "d", i])
        _flush()
    return None
