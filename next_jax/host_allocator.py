"""glibc allocator settings for processes that run XLA:CPU training steps.

XLA:CPU gives each execution of a compiled program one buffer for all of its temporaries and frees
it when the execution ends. For a training step that buffer is large (3.2 GB for the training
benchmark's S preset: activations, their gradients, the [tokens, vocab] logits), and glibc serves a
block that large with a fresh ``mmap``. Every step then faults the whole buffer in again, page by
page, each page zeroed by the kernel: 0.8 million faults a step on S and 1.4 million on M, 3 s of
system CPU time a step on M, and twice that once another 2 GB of live memory makes each fault
dearer (the benchmark's process, after the PyTorch side has run). With one arena, no ``mmap`` and
no trimming, the first step takes the buffer from the heap and every later step reuses it with
no fault at all. The price is that the process keeps its peak heap until it exits, which a
training job reaches on every step anyway.

glibc reads these settings once, when a process starts, from ``GLIBC_TUNABLES``; so they are given
to new processes: ``launch/tpu_run.sh`` exports them for jobs on the CPU, and the training
benchmark restarts itself with them (both sides of its comparison run in that one process).
``NEXT_JAX_HOST_ALLOCATOR=default`` in the environment leaves glibc's defaults alone.

    python -m next_jax.host_allocator     # prints GLIBC_TUNABLES with these settings added
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Optional, Sequence

OPT_OUT = "NEXT_JAX_HOST_ALLOCATOR"
# name -> value; trim_threshold is "never give freed heap back to the kernel".
SETTINGS = (
    ("glibc.malloc.arena_max", "1"),  # every thread allocates from the main (brk) heap...
    ("glibc.malloc.mmap_max", "0"),  # ...never from a fresh mmap...
    ("glibc.malloc.trim_threshold", str(2**62)),  # ...and the heap is kept for reuse.
)


def tunables(existing: str = "") -> str:
    """``existing`` (a GLIBC_TUNABLES value) with these settings added; a setting it names already wins."""
    items = [item for item in existing.split(":") if item]
    named = {item.split("=", 1)[0] for item in items}
    items += [f"{name}={value}" for name, value in SETTINGS if name not in named]
    return ":".join(items)


def applied(env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether ``env`` (default: this process's environment) already names every setting."""
    env = os.environ if env is None else env
    named = {item.split("=", 1)[0] for item in env.get("GLIBC_TUNABLES", "").split(":") if item}
    return all(name in named for name, _ in SETTINGS)


def restart_with_settings(module: str, argv: Optional[Sequence[str]] = None) -> None:
    """Replaces this process by ``python -m module argv...`` with the settings, unless it has them.

    Call it first thing in a binary's ``__main__`` block, before anything has run: the process is
    started again from scratch.
    """
    if applied() or not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "default":
        return
    env = dict(os.environ, GLIBC_TUNABLES=tunables(os.environ.get("GLIBC_TUNABLES", "")))
    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *args], env)


if __name__ == "__main__":
    print(tunables(os.environ.get("GLIBC_TUNABLES", "")))
