"""Byte framing shared by the parent, the workers and the children, and the child's ``emit``.

Frames are ``4-byte big-endian length | 1 kind byte | body``. Between the parent and a worker
(both trusted) bodies are ``marshal`` data. From a child to its worker bodies are plain-data
wire bytes (see ``plain``), since everything a child writes is candidate-controlled.

Child frame kinds: ``M`` a message streamed by ``emit`` while the target runs, ``R`` the
target's return value, ``E`` the target raised (body: the traceback text).

Between a judge and its candidate, replies are always plain-data wire bytes; requests are plain
data too (kind 0), or ``marshal`` bytes (kind ``T``) when they hold exact builtin values only:
the candidate may trust what the judge sends, never the other way round.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Optional

# Bound here, not looked up in builtins at call time: code in a sandboxed child may patch
# builtins (a hostile or merely sloppy program), and that must not garble its own reports.
from builtins import RuntimeError, bytes, len, memoryview, min  # noqa: E402,A004

from next_jax.execution import plain

HEADER = struct.Struct(">IB")


KIND_MESSAGE = ord("M")
KIND_RESULT = ord("R")
KIND_ERROR = ord("E")
KIND_TRUSTED = ord("T")

# Set in a sandboxed child to the fd of its result channel; None everywhere else.
_child_fd: Optional[int] = None


def write_frame(fd: int, kind: int, body: bytes) -> None:
    data = HEADER.pack(len(body), kind) + body
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int) -> Optional[bytes]:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int):
    """Reads one frame from a blocking fd; returns (kind, body) or None at end of stream."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    length, kind = HEADER.unpack(header)
    body = read_exact(fd, length) if length else b""
    if body is None:
        return None
    return kind, body


class FrameParser:
    """Incremental parser for a child's (untrusted) stream; caps the total bytes accepted."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.total = 0
        self._buf = bytearray()

    def feed(self, data: bytes):
        """Returns the complete frames in ``data``; raises ValueError past the byte cap."""
        self.total += len(data)
        if self.total > self.max_bytes:
            raise ValueError(f"result channel exceeded {self.max_bytes} bytes")
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER.size:
            length, kind = HEADER.unpack_from(self._buf)
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append((kind, bytes(self._buf[HEADER.size:end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


def emit(value: Any) -> None:
    """Streams one plain-data message from a sandboxed target to ``SandboxResult.messages``.

    Messages arrive in order and survive a later timeout or crash of the child, so a target can
    report progress (e.g. one message per finished test). Only callable inside a sandbox child.
    """
    if _child_fd is None:
        raise RuntimeError("emit() is only available inside a sandboxed child")
    write_frame(_child_fd, KIND_MESSAGE, plain.dumps(value))
