"""Process 0 decides, every process follows.

On a pod each host sees its own view of the filesystem (a local disk, or a bucket whose listings
lag), so hosts that each check "is this stage done?" can disagree and then wait forever in
different collectives. Here only process 0 looks, and its answer (any JSON value) is broadcast to
the others through ``jax.experimental.multihost_utils``; with one process these are no-ops. Every
wait here has a deadline (``distributed.deadline``): when the other processes do not arrive, this one
stops with an error naming the wait instead of hanging.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from next_jax import distributed


def process_index() -> int:
    import jax

    return jax.process_index()


def process_count() -> int:
    import jax

    return jax.process_count()


def is_chief() -> bool:
    return process_index() == 0


def broadcast_json(value: Any, what: str = "a decision") -> Any:
    """Process 0's ``value`` on every process (the others' arguments are ignored).

    ``what`` names the broadcast in the error of a process that waited for it too long.
    """
    if process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = json.dumps(value).encode("utf-8") if is_chief() else b""
    with distributed.deadline(f"broadcast from process 0 ({what})"):
        length = int(multihost_utils.broadcast_one_to_all(np.asarray(len(data), np.int64)))
        buffer = np.zeros((length,), np.uint8)
        if is_chief():
            buffer[:] = np.frombuffer(data, np.uint8)
        buffer = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    return json.loads(bytes(buffer.astype(np.uint8)).decode("utf-8"))


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (e.g. until process 0 wrote a file)."""
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils

    with distributed.deadline(f"barrier {name!r}"):
        multihost_utils.sync_global_devices(name)
