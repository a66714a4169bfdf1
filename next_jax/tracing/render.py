"""Writes a recorded trace into the program's source as end-of-line comments (NExT's format).

Each line that changed state gets one comment holding its visits in step order, ``(k) name=value;``
per visit (several names changed in one step: ``(k) a=1; b=2;``). Return values are
``__return__=...``; exceptions and marks use spaced ``=`` as in the paper's Figure 1
(``__exception__ = AssertionError()``). Every visit ends with ``;`` except the run's very last step,
which is how Figures 1 and 2 end their traces. Long visit lists are abbreviated by the rule
documented on :class:`TraceConfig` (first visits, ``...;``, last visit). The traced test line(s)
follow the program after ``config.test_separator``.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

from next_jax.tracing.config import TraceConfig
from next_jax.tracing.values import shorten

SPACED = frozenset({"__exception__", "__timeout__", "__untraced__"})
ELIDED = "...;"


def shown_visits(count: int, head: Sequence, last, head_visits: int, min_hidden: int) -> list:
    """The visits a comment shows, with ``None`` where ``...;`` goes.

    ``head`` holds the first recorded visits (at least ``head_visits`` of them when the line was
    visited that often), ``last`` the last one.
    """
    if count <= head_visits + 1:
        visits = list(head[:count])
        if len(visits) < count:
            visits.append(last)
        return visits
    keep = max(0, min(head_visits, count - 1 - min_hidden))
    return list(head[:keep]) + [None, last]


def format_visit(visit, final_step: int, shorten_to: Optional[int] = None) -> str:
    step, items = visit
    parts = []
    for name, text in items:
        if shorten_to is not None:
            text = shorten(text, shorten_to)
        parts.append(f"{name} = {text}" if name in SPACED else f"{name}={text}")
    body = f"({step}) " + "; ".join(parts)
    return body if step == final_step else body + ";"


def comments(data: dict, config: TraceConfig, shorten_to: Optional[int] = None) -> Dict[tuple, str]:
    """(file, line) -> comment text, for every line of ``data`` (a recorder result)."""
    final_step = data["steps"] - 1
    out = {}
    for file_index, line, count, head, last in data["lines"]:
        parts = []
        for visit in shown_visits(count, head, last, config.head_visits, config.min_hidden_visits):
            parts.append(ELIDED if visit is None else format_visit(visit, final_step, shorten_to))
        out[(file_index, line)] = " ".join(parts)
    return out


def _with_comments(source: str, file_index: int, notes: Dict[tuple, str], prefix: str) -> List[str]:
    lines = source.rstrip("\n").split("\n") if source.strip() else []
    out = []
    for number, text in enumerate(lines, start=1):
        note = notes.get((file_index, number))
        out.append(text.rstrip() + prefix + note if note else text.rstrip())
    # Steps on lines past the end (should not happen) must not vanish silently.
    extra = sorted(n for (f, n) in notes if f == file_index and n > len(lines))
    for number in extra:
        out.append(prefix.lstrip() + f"line {number}: " + notes[(file_index, number)])
    return out


def render_trace(program: str, test: str, data: dict, config: TraceConfig = TraceConfig(),
                 shorten_to: Optional[int] = None) -> str:
    """The traced program, ``config.test_separator``, then the traced test (no final newline).

    ``shorten_to`` cuts every value to about that many characters (the budget's second lever).
    Run-level marks (``data["marks"]``) are appended to the test's last line as ``__untraced__``
    entries, so a reader sees what the trace is missing.
    """
    notes = comments(data, config, shorten_to)
    marks = data.get("marks") or []
    if marks:
        test_lines = test.rstrip("\n").split("\n")
        key = (1, len(test_lines))
        extra = "; ".join(f"__untraced__ = {m!r}" for m in marks)
        notes[key] = (notes[key] + "; " + extra) if key in notes else extra
    program_part = "\n".join(_with_comments(program, 0, notes, config.comment_prefix))
    test_part = "\n".join(_with_comments(test, 1, notes, config.comment_prefix))
    return program_part + "\n" + config.test_separator + test_part


def cost(text: str, count_tokens: Optional[Callable[[str], int]] = None) -> int:
    """Size of a trace for the budget: tokens when a counter is given, else characters."""
    return count_tokens(text) if count_tokens is not None else len(text)
