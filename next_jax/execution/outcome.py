"""What a run's children did, as a sandbox status: the worker's reading of exit statuses,
OOM kills and the frames a child wrote on its result channel (decoded as plain data only)."""

from __future__ import annotations

import os
import signal

from next_jax.execution import channel, plain


def partner_status(status: int, cpu_used: float, oom: int) -> str:
    if oom:  # any process of the run was killed for memory: the run went over its limit
        return "memory"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL and oom:
            return "memory"
        return f"killed by {signal.Signals(sig).name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def outcome(status, used, cpu_s, frames, killed_for, detail, pending, oom=0):
    """Returns (status, value, messages, detail) from what the child did and sent."""
    messages, value, result_kind, error_text = [], None, None, ""
    for kind, body in frames:
        if result_kind is not None:
            return ("error", None, messages, "data on the result channel after the result")
        try:
            if kind == channel.KIND_MESSAGE:
                messages.append(plain.loads(body))
            elif kind == channel.KIND_RESULT:
                value, result_kind = plain.loads(body), kind
            elif kind == channel.KIND_ERROR:
                error_text, result_kind = body.decode("utf-8", "replace"), kind
            else:
                return ("error", None, messages, f"unknown frame kind {kind} on the result channel")
        except plain.PlainDataError as e:
            return ("error", None, messages, f"result channel: {e}")
    if oom:
        return ("memory", None, messages, "the run's memory limit was reached (a process was killed)")
    if killed_for == "timeout":
        return ("timeout", None, messages, "wall-clock timeout")
    if killed_for == "cpu":
        return ("timeout", None, messages, detail)
    if killed_for:
        return ("error", None, messages, detail)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL) and used >= max(1, int(cpu_s + 0.999)) - 0.05:
            return ("timeout", None, messages, f"CPU time limit ({used:.2f} s used)")
        return ("crash", None, messages, f"killed by {signal.Signals(sig).name}")
    code = os.WEXITSTATUS(status)
    if pending:
        return ("error", None, messages, "truncated frame on the result channel")
    if result_kind == channel.KIND_RESULT and code == 0:
        return ("ok", value, messages, "")
    if result_kind == channel.KIND_ERROR:
        last = error_text.rstrip().rsplit("\n", 1)[-1]
        if last.startswith("MemoryError"):
            return ("memory", None, messages, error_text)
        return ("error", None, messages, error_text)
    return ("error", None, messages, f"exited with code {code} without a result")


def text(buf: bytearray, dropped: int) -> str:
    text = buf.decode("utf-8", "replace")
    if dropped:
        text += f"\n[... {dropped} more bytes dropped]"
    return text
