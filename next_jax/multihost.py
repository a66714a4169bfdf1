"""Process 0 decides, every process follows.

On a pod each host sees its own view of the filesystem (a local disk, or a bucket whose listings
lag), so hosts that each check "is this stage done?" can disagree and then wait forever in
different collectives. Here only process 0 looks, and its answer (any JSON value) is broadcast to
the others through ``jax.experimental.multihost_utils``; with one process these are no-ops.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def process_index() -> int:
    import jax

    return jax.process_index()


def process_count() -> int:
    import jax

    return jax.process_count()


def is_chief() -> bool:
    return process_index() == 0


def broadcast_json(value: Any) -> Any:
    """Process 0's ``value`` on every process (the others' arguments are ignored)."""
    if process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = json.dumps(value).encode("utf-8") if is_chief() else b""
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

    multihost_utils.sync_global_devices(name)
