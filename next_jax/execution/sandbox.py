"""Isolated execution of untrusted Python: the generic primitive every sandboxed stage uses.

Contract (stable; the tracer and the checker are both built on it)::

    @dataclasses.dataclass(frozen=True)
    class Limits:             # defaults below; all overridable
        timeout_s: float      # wall clock for the whole run; then SIGKILL of everything it started
        cpu_s: float          # RLIMIT_CPU (rounded up to whole seconds)
        memory_bytes: int     # RLIMIT_AS
        file_size_bytes: int  # RLIMIT_FSIZE (a bigger write fails with EFBIG)
        max_processes: int    # RLIMIT_NPROC for the child's uid (threads count)
        max_output_bytes: int # kept of stdout and of stderr each; the rest is read and dropped
        max_result_bytes: int # result channel cap (return value + emitted messages)

    @dataclasses.dataclass
    class SandboxResult:
        status: str           # 'ok' | 'timeout' | 'memory' | 'crash' | 'error'
        value: object         # the target's return value (plain data, validated); None unless ok
        stdout: str; stderr: str   # captured, capped
        wall_s: float; detail: str # detail: why not ok (traceback text, signal, limit hit)
        messages: list        # plain-data values the target passed to emit(), in order

    def run_isolated(target: str, payload, limits: Limits = Limits()) -> SandboxResult
    class SandboxPool:        # warm workers; context manager
        def __init__(self, workers=None, *, preload=DEFAULT_PRELOAD, targets=(), hide=(), ...)
        def map(self, target: str, payloads: Iterable, limits: Limits = None) -> Iterator[SandboxResult]
    def emit(value) -> None   # inside the target: stream a plain-data message to the parent

``target`` is ``"package.module:function"``. The module is imported by the (trusted) worker
before it forks, so it is warm; the function is called inside the fully isolated child, after
every restriction is in place, with ``payload`` (plain data: None, bool, int, float, complex,
str, bytes, list, tuple, dict, set, frozenset; parent to worker it travels as marshal) and must
return plain data (exact builtin types, no subclasses; anything else makes the result 'error').
``map`` yields results in the order of ``payloads`` while keeping every worker busy; a pool is
used from one thread at a time. ``preload`` modules are imported by each worker before it forks
(keep targets' own imports light: a bigger worker forks slower). The child can read what file
permissions allow other users to read; ``hide`` masks files and directories it must not see
(e.g. task files holding expected outputs).

Statuses: 'ok' the target returned; 'timeout' wall deadline or CPU limit; 'memory' the target
raised MemoryError (address-space limit); 'crash' the child died by a signal (segfault, abort);
'error' the target raised (``detail`` holds the traceback), exited without a result, wrote
malformed data on its channel, or went over ``max_result_bytes``.

Mechanisms (see ``isolation``): per worker a network, IPC/UTS and mount namespace with the whole
tree read-only and a private tmpfs for working dirs; per run a fresh PID namespace whose init is
the child (its death kills every process it started), a new session, rlimits, no_new_privs, a
uid/gid unique to the worker slot, stdin on /dev/null, stdout/stderr/result on pipes drained
and capped by the worker, a scrubbed environment and a fresh working directory removed after.
Where a mechanism is missing the pool logs a warning naming what is lost (``mechanisms``).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import json
import marshal
import os
import selectors
import shutil
import subprocess
import sys
import threading
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional

from absl import logging

from next_jax.execution import channel
from next_jax.execution.channel import emit  # noqa: F401  (public: used inside targets)
from next_jax.execution.worker import DEFAULT_PRELOAD

__all__ = ["Limits", "SandboxResult", "SandboxPool", "run_isolated", "emit", "DEFAULT_PRELOAD"]

STATUSES = ("ok", "timeout", "memory", "crash", "error")

_UID_BASE = 1_000_000_000  # sandbox uids: _UID_BASE + (parent pid % 4e6) * 128 + slot
_UID_SLOTS = 128
_PIPELINE_DEPTH = 2  # requests queued per worker, so a worker never waits for the parent
# -S (no site module, no .pth files): a smaller worker forks faster; the parent's sys.path,
# with the directory holding next_jax first, is passed instead.
_BOOT = (
    "import sys, json; sys.dont_write_bytecode = True; sys.path[:0] = json.loads(sys.argv[2]); "
    "from next_jax.execution.worker import main; main()"
)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: float = 10.0
    memory_bytes: int = 2 << 30
    file_size_bytes: int = 16 << 20
    max_processes: int = 64
    max_output_bytes: int = 1 << 20
    max_result_bytes: int = 64 << 20

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive number, got {v!r}")

    def as_tuple(self) -> tuple:
        return (float(self.timeout_s), float(self.cpu_s), int(self.memory_bytes),
                int(self.file_size_bytes), int(self.max_processes), int(self.max_output_bytes),
                int(self.max_result_bytes))


@dataclasses.dataclass
class SandboxResult:
    status: str
    value: Any
    stdout: str
    stderr: str
    wall_s: float
    detail: str
    messages: list = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def sandbox_uid_range() -> range:
    """All uids this module may give to sandboxed children, in any process on the machine."""
    return range(_UID_BASE, _UID_BASE + 4_000_000 * _UID_SLOTS)


def uids_of_this_process() -> range:
    """The uids the pools of this process give their children (for leftover-process checks)."""
    first = _UID_BASE + (os.getpid() % 4_000_000) * _UID_SLOTS
    return range(first, first + _UID_SLOTS)


def sandbox_processes() -> list:
    """Pids of live processes running as one of this process's sandbox uids.

    Empty once every pool of this process is closed: the "no process survives a check" property,
    checked from outside (other processes' sandboxes use other uids and are not counted).
    """
    uids = uids_of_this_process()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid in uids:
                    found.append(int(name))
            except OSError:
                pass
    return found


_slot_lock = threading.Lock()
_slots_in_use: set = set()
_logged: set = set()


def _take_slot() -> int:
    with _slot_lock:
        for slot in range(_UID_SLOTS):
            if slot not in _slots_in_use:
                _slots_in_use.add(slot)
                return slot
    raise RuntimeError(f"more than {_UID_SLOTS} sandbox workers in one process")


def _free_slot(slot: int) -> None:
    with _slot_lock:
        _slots_in_use.discard(slot)


class _Worker:
    """Parent-side handle of one worker process."""

    def __init__(self, slot: int, cfg: dict):
        self.slot = slot
        self.uid = _UID_BASE + (os.getpid() % 4_000_000) * _UID_SLOTS + slot
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        cfg = dict(cfg, uid=self.uid, req_fd=req_r, resp_fd=resp_w)
        # A fixed hash seed makes str/bytes hashing, and so set and dict-of-set orders, the same in
        # every worker and run: traces and verdicts must not depend on which worker ran them.
        # `-I` would ignore PYTHONHASHSEED, so its parts that matter are spelled out (`-s -P`); the
        # environment is built here from scratch, so honouring it lets nothing else in.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", "-S", "-c", _BOOT, json.dumps(cfg),
             json.dumps([_PACKAGE_ROOT] + [os.path.abspath(p) for p in sys.path if p])],
            pass_fds=(req_r, resp_w), env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        os.close(req_r)
        os.close(resp_w)
        self.inflight: Deque[int] = collections.deque()
        self.outbuf = bytearray()
        self.inbuf = bytearray()
        self.hello = self._read_hello(cfg["start_timeout_s"])
        os.set_blocking(self.req_w, False)
        os.set_blocking(self.resp_r, False)

    def _read_hello(self, timeout_s: float) -> dict:
        sel = selectors.DefaultSelector()
        sel.register(self.resp_r, selectors.EVENT_READ)
        ok = sel.select(timeout_s)
        sel.close()
        frame = channel.read_frame(self.resp_r) if ok else None
        if frame is None:
            self.kill()
            raise RuntimeError(
                f"sandbox worker did not start (exit code {self.proc.poll()}); see its stderr above")
        return marshal.loads(frame[1])

    def feed(self, data: bytes) -> List[tuple]:
        self.inbuf += data
        out = []
        while len(self.inbuf) >= channel.HEADER.size:
            length, _ = channel.HEADER.unpack_from(self.inbuf)
            end = channel.HEADER.size + length
            if len(self.inbuf) < end:
                break
            out.append(marshal.loads(bytes(self.inbuf[channel.HEADER.size:end])))
            del self.inbuf[:end]
        return out

    def kill(self) -> None:
        for fd in (self.req_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self, timeout_s: float) -> None:
        try:
            os.close(self.req_w)  # EOF: the worker finishes its current run and exits
        except OSError:
            pass
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self.resp_r)
        except OSError:
            pass


class SandboxPool:
    """Warm fork-server workers that run targets in isolated children (see module doc)."""

    def __init__(self, workers: Optional[int] = None, *, preload: Iterable[str] = DEFAULT_PRELOAD,
                 targets: Iterable[str] = (), limits: Limits = Limits(),
                 scratch_bytes: int = 1 << 30, allow_namespaces: bool = True,
                 hide: Iterable[str] = (), start_timeout_s: float = 120.0):
        self.size = int(workers or os.cpu_count() or 1)
        if self.size < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.limits = limits
        self._cfg = {"preload": list(preload), "targets": list(targets),
                     "scratch_bytes": int(scratch_bytes), "allow_namespaces": bool(allow_namespaces),
                     "hide": [os.path.abspath(p) for p in hide],
                     "start_timeout_s": float(start_timeout_s)}
        self._workers: List[Optional[_Worker]] = []
        self._seq = 0
        self._closed = False
        try:
            for _ in range(self.size):
                self._workers.append(self._spawn(_take_slot()))
        except BaseException:
            self.close()
            raise
        self.mechanisms: Dict[str, Any] = self._workers[0].hello["mechanisms"]

    def _spawn(self, slot: int) -> _Worker:
        try:
            w = _Worker(slot, self._cfg)
        except BaseException:
            _free_slot(slot)
            raise
        for msg in w.hello["mechanisms"]["warnings"]:
            _log_once(f"sandbox isolation degraded: {msg}")
        for msg in w.hello["preload_failed"]:
            _log_once(f"sandbox worker could not preload {msg}")
        return w

    @property
    def worker_pids(self) -> List[int]:
        """The workers' pids (in a PID namespace of its own a worker is not its Popen process)."""
        return [w.hello["pid"] for w in self._workers if w is not None]

    @property
    def scratch_dirs(self) -> List[str]:
        """The host directories the workers' working dirs live under (removed by close)."""
        return [w.hello["mechanisms"]["scratch"] for w in self._workers if w is not None]

    @property
    def uids(self) -> List[int]:
        return [w.uid for w in self._workers if w is not None]

    def run(self, target: str, payload: Any, limits: Optional[Limits] = None) -> SandboxResult:
        return next(self.map(target, [payload], limits))

    def map(self, target: str, payloads: Iterable, limits: Optional[Limits] = None) -> Iterator[SandboxResult]:
        lim = limits or self.limits
        return self.map_each(target, ((p, lim) for p in payloads))

    def map_each(self, target: str, items: Iterable) -> Iterator[SandboxResult]:
        """Like ``map`` for ``(payload, Limits)`` pairs: each run gets its own limits."""
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        if not isinstance(target, str) or ":" not in target:
            raise ValueError(f"target must be 'package.module:function', got {target!r}")
        source = iter(items)
        exhausted = False
        ready: Dict[int, SandboxResult] = {}
        order: Deque[int] = collections.deque()
        owner: Dict[int, int] = {}
        sel = selectors.DefaultSelector()
        try:
            while True:
                while not exhausted:
                    idx = self._least_loaded()
                    if idx is None:
                        break
                    try:
                        payload, limits = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    self._seq += 1
                    seq = self._seq
                    try:
                        body = marshal.dumps((seq, target, payload, limits.as_tuple()))
                    except ValueError as e:
                        raise TypeError(f"payload #{len(order)} is not plain data: {e}") from None
                    w = self._workers[idx]
                    w.outbuf += channel.HEADER.pack(len(body), 0) + body
                    w.inflight.append(seq)
                    owner[seq] = idx
                    order.append(seq)
                while order and order[0] in ready:
                    yield ready.pop(order.popleft())
                if not order:
                    if exhausted:
                        return
                    continue
                self._pump(sel, ready, owner)
        finally:
            if order:  # the caller stopped early: let in-flight runs finish so workers stay in sync
                pending = set(order) - set(ready)
                while pending:
                    self._pump(sel, ready, owner)
                    pending -= set(ready)
            sel.close()

    def _least_loaded(self) -> Optional[int]:
        best, best_n = None, _PIPELINE_DEPTH
        for i, w in enumerate(self._workers):
            if len(w.inflight) < best_n:
                best, best_n = i, len(w.inflight)
        return best

    def _pump(self, sel: selectors.BaseSelector, ready: Dict[int, SandboxResult], owner: Dict[int, int]) -> None:
        """Writes queued requests and reads responses until at least one event was handled."""
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
        for i, w in enumerate(self._workers):
            if w.inflight:
                sel.register(w.resp_r, selectors.EVENT_READ, (i, "r"))
            if w.outbuf:
                sel.register(w.req_w, selectors.EVENT_WRITE, (i, "w"))
        for key, _ in sel.select():
            i, what = key.data
            w = self._workers[i]
            if what == "w":
                try:
                    n = os.write(w.req_w, w.outbuf)
                    del w.outbuf[:n]
                except (BrokenPipeError, BlockingIOError):
                    pass
                continue
            try:
                data = os.read(w.resp_r, 1 << 20)
            except BlockingIOError:
                continue
            if not data:
                self._replace_dead_worker(i, ready, owner)
                continue
            for resp in w.feed(data):
                seq = resp[0]
                w.inflight.remove(seq)
                owner.pop(seq, None)
                ready[seq] = SandboxResult(
                    status=resp[1], value=resp[2], messages=resp[3], stdout=resp[4],
                    stderr=resp[5], wall_s=resp[6], detail=resp[7])

    def _replace_dead_worker(self, i: int, ready, owner) -> None:
        w = self._workers[i]
        code = w.proc.poll()
        for seq in w.inflight:
            ready[seq] = SandboxResult("error", None, "", "", 0.0,
                                       f"sandbox worker died (exit code {code})")
            owner.pop(seq, None)
        w.kill()
        scratch = w.hello["mechanisms"]["scratch"]
        if scratch and os.path.isdir(scratch):
            shutil.rmtree(scratch, ignore_errors=True)
        logging.warning("sandbox worker %d died (exit code %s); starting a new one", w.proc.pid, code)
        self._workers[i] = self._spawn(w.slot)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w is not None:
                w.close(timeout_s)
                _free_slot(w.slot)
                scratch = w.hello["mechanisms"]["scratch"]
                if scratch and os.path.isdir(scratch):
                    shutil.rmtree(scratch, ignore_errors=True)
        self._workers = []

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _log_once(msg: str) -> None:
    if msg not in _logged:
        _logged.add(msg)
        logging.warning("%s", msg)


_default_pool: Optional[SandboxPool] = None
_default_lock = threading.Lock()


def run_isolated(target: str, payload: Any, limits: Limits = Limits()) -> SandboxResult:
    """Runs one target in an isolated child of a shared one-worker pool (started on first use).

    For many runs, use a ``SandboxPool`` with several workers and ``map``.
    """
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = SandboxPool(1)
            atexit.register(_close_default_pool)
        return _default_pool.run(target, payload, limits)


def _close_default_pool() -> None:
    global _default_pool
    if _default_pool is not None:
        _default_pool.close()
        _default_pool = None
