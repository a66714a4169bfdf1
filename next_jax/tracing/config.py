"""Settings of the recorder and the renderer, in one frozen, serialisable dataclass.

The defaults reproduce the paper's Figures 1 and 2 (``tests/tracing/golden``); every field is a
plain value so a config travels to the sandboxed child as data (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class TraceConfig:
    """How a trace is recorded and written.

    Recording:
      max_value_chars: cap on one value's text; longer values end in a visible ``...``.
      max_events: trace events (calls, lines, returns) before the run is stopped and the trace
        ends with a ``__timeout__`` mark: this turns an endless loop into a finished trace.
      max_seconds: CPU-time cap on one traced run, checked between events (same mark). A
        backstop for programs slow between events: where it, not ``max_events``, stops a run,
        the stopping point depends on the machine, so such traces can differ between runs.
      timeout_s: the test timeout (wall clock; the checker's ``test_timeout_s``). The program
        and test first run untraced under it, which costs a few percent of the traced run; one
        that does not finish is traced only up to ``timeout_events`` events (and at most
        ``timeout_s`` of CPU), so a program that never ends costs about its test timeout instead
        of ``max_events`` or ``max_seconds``. None: no untraced run, the caps above only.
      timeout_events: the event cap for a run that did not finish untraced within ``timeout_s``.
      seed: ``random`` (and numpy's global generator, if loaded) is seeded with it before the
        program runs, so traces of programs that draw random numbers repeat exactly.
      show_yields: generators show ``__yield__=<value>`` on each ``yield``.

    Rendering (the abbreviation rule): a line visited ``n`` times shows at most
    ``head_visits`` first visits and the last one; when visits are left out they are replaced
    by ``...;`` and at least ``min_hidden_visits`` must be left out (hiding one visit saves
    nothing), so the head shrinks to make room. With 3 and 2: 10 visits -> 3 + ``...;`` + last,
    5 visits -> 2 + ``...;`` + last, 4 visits -> all 4 (Figure 2 has both cases).
      comment_prefix: text between the code and its trace comment.
      test_separator: text between the traced program and the traced test line(s) (a blank line,
        as in the figures; use ``""`` for none).
    """

    max_value_chars: int = 100
    max_events: int = 10_000_000
    max_seconds: float = 60.0
    timeout_s: Optional[float] = 3.0
    timeout_events: int = 100_000
    seed: int = 0
    show_yields: bool = True
    head_visits: int = 3
    min_hidden_visits: int = 2
    comment_prefix: str = "  # "
    test_separator: str = "\n"

    def __post_init__(self):
        if self.max_value_chars < 8:
            raise ValueError(f"max_value_chars must be >= 8, got {self.max_value_chars}")
        if self.max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {self.max_events}")
        if self.timeout_events < 1:
            raise ValueError(f"timeout_events must be >= 1, got {self.timeout_events}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {self.timeout_s}")
        if self.head_visits < 0:
            raise ValueError(f"head_visits must be >= 0, got {self.head_visits}")
        if self.min_hidden_visits < 1:
            raise ValueError(f"min_hidden_visits must be >= 1, got {self.min_hidden_visits}")
        if "\n" in self.comment_prefix or "#" not in self.comment_prefix:
            raise ValueError(f"comment_prefix must contain '#' and no newline: {self.comment_prefix!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TraceConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TraceConfig fields {unknown} (known: {sorted(known)})")
        return cls(**d)
