"""Parent-side evaluation of assert templates over the plain values a child sent back.

Templates come from ``splitting`` and contain only whitelisted node types, names and calls, so
``eval`` here runs no code but builtins on plain data. The operators that can blow up in size
(``**``, ``*``, ``<<``, ``pow``, ``range``) go through guards that refuse results far larger than
any test needs, because a candidate picks the hole values.

Equality is Python's own ``==`` on the rebuilt builtin values (``1 == 1.0 == True``, exact float
comparison, no tolerance: tests that want a tolerance say so with ``math.isclose`` or
``abs(...) < eps``, which templates support). ``strict_types=True`` instead requires identical
types at every level (bool is not int, int is not float, list is not tuple).
"""

from __future__ import annotations

import builtins
import marshal
import math
import types
from typing import Any, Dict, List, Sequence, Tuple

from next_jax.execution.splitting import TEMPLATE_BUILTINS, TEMPLATE_MATH, Site

_MAX_ITEMS = 10_000_000
_MAX_BITS = 1_000_000


class HoleError(Exception):
    """A hole whose evaluation failed in the child; raised when the template reaches it."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind  # 'error' (it raised) | 'not_plain' (its value was not plain data)


def _size(x: Any) -> int:
    return len(x) if isinstance(x, (str, bytes, list, tuple)) else 1


def _nj_mul(a, b):
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and _size(seq) * max(n, 0) > _MAX_ITEMS:
            raise OverflowError("sequence repetition too large for a template")
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > _MAX_BITS:
        raise OverflowError("integer product too large for a template")
    return a * b


def _nj_pow(a, b, mod=None):
    if mod is None and isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 \
            and a.bit_length() * b > _MAX_BITS:
        raise OverflowError("power too large for a template")
    return builtins.pow(a, b) if mod is None else builtins.pow(a, b, mod)


def _nj_lshift(a, b):
    if isinstance(b, int) and b > _MAX_BITS:
        raise OverflowError("shift too large for a template")
    return a << b


def _nj_range(*args):
    r = builtins.range(*args)
    if len(r) > _MAX_ITEMS:
        raise OverflowError("range too large for a template")
    return r


def strict_eq(a: Any, b: Any) -> bool:
    """Equality that also requires the same type at every level of the two values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return a == b and {type(x) for x in a} == {type(x) for x in b}
    return a == b


def _namespace() -> Dict[str, Any]:
    ns: Dict[str, Any] = {name: getattr(builtins, name) for name in TEMPLATE_BUILTINS}
    ns.update(pow=_nj_pow, range=_nj_range)
    ns["math"] = types.SimpleNamespace(**{name: getattr(math, name) for name in TEMPLATE_MATH})
    ns.update(_nj_pow=_nj_pow, _nj_mul=_nj_mul, _nj_lshift=_nj_lshift, _nj_strict_eq=strict_eq)
    return {"__builtins__": {"True": True, "False": False, "None": None}, **ns}


_GLOBALS = _namespace()


class _Holes(dict):
    """Hole values by name; a failed hole raises its error only when the template uses it."""

    def __init__(self, values: Sequence[Tuple[str, Any]]):
        super().__init__()
        self.failures: Dict[str, HoleError] = {}
        for i, (tag, v) in enumerate(values):
            key = f"_h{i}"
            if tag == "v":
                self[key] = v
            else:
                self.failures[key] = HoleError("error" if tag == "e" else "not_plain", str(v))

    def __missing__(self, key):
        if key in self.failures:
            raise self.failures[key]
        raise KeyError(key)


class CompiledSites:
    """The templates of one task, unmarshalled once and evaluated for many samples."""

    def __init__(self, sites: Sequence[Site]):
        self.sites = list(sites)
        self._code = [marshal.loads(s.template) for s in sites]

    def evaluate(self, site: int, values: List[Tuple[str, Any]]) -> Tuple[str, str]:
        """Returns ('pass' | 'fail' | 'error', detail) for one report of ``site``."""
        s = self.sites[site]
        if len(values) != len(s.holes):
            return "error", f"{s.source}: got {len(values)} values for {len(s.holes)} holes"
        try:
            # Safe: whitelisted AST over plain builtin values, so bool() runs builtin code only.
            ok = bool(eval(self._code[site], _GLOBALS, _Holes(values)))  # noqa: S307
        except HoleError as e:
            return ("fail" if e.kind == "not_plain" else "error"), f"{s.source}: {e}"
        except Exception as e:  # the test's own expression raised on these values
            return "error", f"{s.source}: {e.__class__.__name__}: {e}"[:1000]
        if ok:
            return "pass", ""
        shown = ", ".join(f"{h} = {_short(v)}" for h, (_, v) in zip(s.holes, values))
        return "fail", f"{s.source}  ({shown})"[:1000]


def _short(v: Any, limit: int = 200) -> str:
    try:
        text = repr(v)
    except Exception:  # e.g. an int beyond the str conversion limit
        text = f"<{type(v).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
