"""The one progress reporter: counts, rate and ETA for every long-running stage.

    progress = Progress("trace", total=len(tasks), unit="tasks")
    for task in tasks:
        ...
        progress.update(1, failures=n_failed)
    progress.finish()

Logs through absl at most every ``every_s`` seconds (and once at the end), e.g.
``trace: 120/490 tasks (24.5%), 3.1 tasks/s, ETA 2m00s, failures=3``. ``total`` may be None when
unknown; then no percentage or ETA is shown. Extra keyword counts are shown as given (the latest
value), so a stage can report accepted/rejected tallies beside the main count.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from absl import logging


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts work done and logs rate and ETA periodically."""

    def __init__(
        self,
        name: str,
        total: Optional[int] = None,
        *,
        unit: str = "items",
        every_s: float = 10.0,
        start: int = 0,
        log: Callable[[str], None] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.total = total
        self.unit = unit
        self.every_s = every_s
        self.done = start
        self._start_count = start
        self._clock = clock
        self._t0 = clock()
        self._last_log = self._t0
        self._log = log or (lambda message: logging.info("%s", message))
        self.extra: Dict[str, object] = {}

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._t0

    @property
    def rate(self) -> float:
        """Items per second since this reporter started (items done before it are not counted)."""
        return (self.done - self._start_count) / max(self.elapsed_s, 1e-9)

    def eta_s(self) -> Optional[float]:
        if self.total is None or self.rate <= 0:
            return None
        return max(0, self.total - self.done) / self.rate

    def message(self) -> str:
        parts = [f"{self.name}: {self.done}"]
        if self.total is not None:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            parts[0] += f"/{self.total} {self.unit} ({pct:.1f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{self.rate:.3g} {self.unit}/s")
        eta = self.eta_s()
        if eta is not None and self.done < (self.total or 0):
            parts.append(f"ETA {format_seconds(eta)}")
        parts.append(f"elapsed {format_seconds(self.elapsed_s)}")
        parts.extend(f"{k}={v}" for k, v in self.extra.items())
        return ", ".join(parts)

    def update(self, n: int = 1, **extra) -> None:
        self.done += n
        self.extra.update(extra)
        now = self._clock()
        if now - self._last_log >= self.every_s:
            self._last_log = now
            self._log(self.message())

    def finish(self, **extra) -> str:
        """Logs the final line and returns it."""
        self.extra.update(extra)
        message = self.message()
        self._log(message)
        return message
