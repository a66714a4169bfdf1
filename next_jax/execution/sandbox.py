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
        partner: str          # judged runs: how the candidate process ended ('' otherwise)

    def run_isolated(target: str, payload, limits: Limits = Limits()) -> SandboxResult
    class SandboxPool:        # warm workers; context manager
        def __init__(self, workers=None, *, preload=DEFAULT_PRELOAD, targets=(), hide=(), ...)
        def map(self, target: str, payloads: Iterable, limits: Limits = None) -> Iterator[SandboxResult]
        def map_each(self, target, items: Iterable[(payload, Limits[, group])], partner="") -> Iterator[SandboxResult]
    def emit(value) -> None   # inside the target: stream a plain-data message to the parent

``target`` is ``"package.module:function"``. The module is imported by the (trusted) worker
before it forks, so it is warm; the function is called inside the fully isolated child, after
every restriction is in place, with ``payload`` (plain data: None, bool, int, float, complex,
str, bytes, list, tuple, dict, set, frozenset; parent to worker it travels as marshal) and must
return plain data (exact builtin types, no subclasses; anything else makes the result 'error').
``map`` yields results in the order of ``payloads`` while keeping every worker busy; a pool is
used from one thread at a time. ``preload`` modules are imported by each worker before it forks
(keep targets' own imports light: a bigger worker forks slower). The child sees only an
allow-listed file tree (the interpreter, the standard library, system shared libraries, the
preloaded packages, its own scratch); ``hide`` masks files and directories inside it too.

A judged run (``partner`` given: ``map_each(judge_target, items, partner=candidate_target)``)
runs the target as a judge that gets the payload and the partner as a separate candidate
process that gets nothing but the judge's calls (``judge``, ``candidate``); the result is the
judge's, with ``partner`` telling how the candidate ended. Every run gets a fresh candidate. A
judge is fresh from the zygote for each group (an item's optional third element, e.g. a task
id): consecutive runs of one group on a worker share a judge, runs of different groups never
do, so nothing one group's run changes in the judge's modules reaches another group's runs.
Items of one group go to the worker that ran the group's last item when it has room.

Statuses: 'ok' the target returned; 'timeout' wall deadline or CPU limit; 'memory' the target
raised MemoryError (address-space limit); 'crash' the child died by a signal (segfault, abort);
'error' the target raised (``detail`` holds the traceback), exited without a result, wrote
malformed data on its channel, or went over ``max_result_bytes``.

Mechanisms (see ``isolation``, ``cgroups``, ``zygote``): per worker a network, IPC/UTS and
mount namespace with the whole tree read-only, an allow-listed file tree children chroot into,
a cgroup holding every process of its runs (memory, process count and CPU time of the whole
tree; at most one CPU of bandwidth; a kernel-memory watchdog) and a zygote forked before any
payload; per run fresh PID namespaces whose inits are the children (their death kills every
process they started), a mount and IPC namespace rooted in the allow-listed tree with fresh
tmpfs mounts as working dir and /dev/shm and its own /proc, a user namespace and session
keyring of its own, the zygote's seccomp filter against page-cache probes, a new session, rlimits (open
files among them), no_new_privs, a uid/gid unique to the worker slot (judges get another), stdin on /dev/null, stdout/stderr/result on
pipes drained and capped by the worker, a scrubbed environment. Where a mechanism is missing
the pool logs a warning naming what is lost (``mechanisms``).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import glob
import json
import marshal
import os
import selectors
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional

from absl import logging

from next_jax.execution import cgroups, channel
from next_jax.execution.channel import emit  # noqa: F401  (public: used inside targets)
from next_jax.execution.worker import DEFAULT_PRELOAD

__all__ = ["Limits", "SandboxResult", "SandboxPool", "run_isolated", "emit", "DEFAULT_PRELOAD"]

STATUSES = ("ok", "timeout", "memory", "crash", "error")

_UID_BASE = 1_000_000_000  # sandbox uids: _UID_BASE + (parent pid % 4e6) * 256 + 2 * slot (+1)
_UID_SLOTS = 128
_UIDS_PER_PID = 2 * _UID_SLOTS  # each slot: the candidate's uid and its judge's
_DEADLINE_SLACK_S = 60.0  # a worker that has not answered by its runs' limits plus this is killed
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
    partner: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def sandbox_uid_range() -> range:
    """All uids this module may give to sandboxed children, in any process on the machine."""
    return range(_UID_BASE, _UID_BASE + 4_000_000 * _UIDS_PER_PID)


def uids_of_process(pid: int) -> range:
    """The uids the pools of process ``pid`` give their children (candidates and judges)."""
    first = _UID_BASE + (pid % 4_000_000) * _UIDS_PER_PID
    return range(first, first + _UIDS_PER_PID)


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


class WorkerHandle:
    """Parent-side handle of one worker process (the worker itself is ``worker.SandboxWorker``)."""

    def __init__(self, slot: int, cfg: dict):
        self.slot = slot
        self.uid = uids_of_process(os.getpid())[2 * slot]
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        cfg = dict(cfg, uid=self.uid, slot=slot, pool_pid=os.getpid(), req_fd=req_r, resp_fd=resp_w)
        # A fixed hash seed makes str/bytes hashing, and so set and dict-of-set orders, the same in
        # every worker and run: traces and verdicts must not depend on which worker ran them.
        # `-I` would ignore PYTHONHASHSEED, so its parts that matter are spelled out (`-s -P`); the
        # environment is built here from scratch, so honouring it lets nothing else in.
        # LD_BIND_NOW: the loader resolves every library call at start, so a forked child never
        # writes the worker's symbol tables (a copy-on-write fault each) the first time it
        # calls a C function the worker had not called yet.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "LD_BIND_NOW": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-P", "-S", "-c", _BOOT, json.dumps(cfg),
             json.dumps([_PACKAGE_ROOT] + [os.path.abspath(p) for p in sys.path if p])],
            pass_fds=(req_r, resp_w), env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        os.close(req_r)
        os.close(resp_w)
        self.inflight: Deque[int] = collections.deque()
        self.last_group: Optional[str] = None
        self.deadlines: Dict[int, float] = {}
        self.outbuf = bytearray()
        self.inbuf = bytearray()
        self.hello = self._read_hello(cfg["start_timeout_s"])
        self.started = time.monotonic()  # when its oldest in-flight run started (about)
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
        self._workers: List[Optional[WorkerHandle]] = []
        self._seq = 0
        _remove_stale_scratch()
        self._closed = False
        try:
            for _ in range(self.size):
                self._workers.append(self._spawn(_take_slot()))
        except BaseException:
            self.close()
            raise
        self.mechanisms: Dict[str, Any] = self._workers[0].hello["mechanisms"]

    def _spawn(self, slot: int) -> WorkerHandle:
        try:
            w = WorkerHandle(slot, self._cfg)
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

    def map_each(self, target: str, items: Iterable, partner: str = "") -> Iterator[SandboxResult]:
        """Like ``map`` for ``(payload, Limits)`` pairs: each run gets its own limits. With
        ``partner``, each run is judged: ``target`` is the judge, ``partner`` the candidate;
        an item ``(payload, Limits, group)`` names the group whose runs may share a judge
        (module doc)."""
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
                    if self._least_loaded() is None:
                        break
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    payload, limits = item[0], item[1]
                    group = str(item[2]) if len(item) > 2 and item[2] is not None else None
                    idx = self._route(group)
                    self._seq += 1
                    seq = self._seq
                    try:
                        body = marshal.dumps((seq, target, payload, limits.as_tuple(), partner,
                                              group))
                    except ValueError as e:
                        raise TypeError(f"payload #{len(order)} is not plain data: {e}") from None
                    w = self._workers[idx]
                    w.last_group = group
                    w.outbuf += channel.HEADER.pack(len(body), 0) + body
                    if not w.inflight:
                        w.started = time.monotonic()
                    w.inflight.append(seq)
                    w.deadlines[seq] = limits.timeout_s + _DEADLINE_SLACK_S
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

    def _route(self, group: Optional[str]) -> int:
        """The worker that got this group's last item if it has room, one more than its usual
        queue (its judge may serve this run too: a task's samples usually come in a row),
        else the least loaded one."""
        if group is not None:
            for i, w in enumerate(self._workers):
                if w.last_group == group and len(w.inflight) <= _PIPELINE_DEPTH:
                    return i
        return self._least_loaded()

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
        now = time.monotonic()
        waits = [w.started + w.deadlines[w.inflight[0]] - now for w in self._workers if w.inflight]
        events = sel.select(max(0.0, min(waits)) if waits else None)
        if not events:
            # Every wait has a deadline: the first run of some worker is overdue by far.
            now = time.monotonic()
            for i, w in enumerate(self._workers):
                if w.inflight and now - w.started >= w.deadlines[w.inflight[0]]:
                    logging.warning("sandbox worker %d stopped answering; killing it", w.proc.pid)
                    w.proc.kill()
                    self._replace_dead_worker(i, ready, owner)
            return
        for key, _ in events:
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
                w.deadlines.pop(seq, None)
                w.started = time.monotonic()
                owner.pop(seq, None)
                ready[seq] = SandboxResult(
                    status=resp[1], value=resp[2], messages=resp[3], stdout=resp[4],
                    stderr=resp[5], wall_s=resp[6], detail=resp[7], partner=resp[8])

    def _replace_dead_worker(self, i: int, ready, owner) -> None:
        w = self._workers[i]
        code = w.proc.poll()
        for seq in w.inflight:
            ready[seq] = SandboxResult("error", None, "", "", 0.0,
                                       f"sandbox worker died (exit code {code})")
            owner.pop(seq, None)
        w.kill()
        _remove_worker_dirs(w)
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
                _remove_worker_dirs(w)
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


def _remove_stale_scratch() -> None:
    """Scratch mountpoints of workers whose pool died without closing (named by worker pid)."""
    for path in glob.glob("/tmp/next_jax_sandbox_*"):
        try:
            pid = int(os.path.basename(path).split("_")[3])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            pass


def _remove_worker_dirs(w: WorkerHandle) -> None:
    """The worker's scratch mountpoint and its cgroup leaves, once its processes are gone."""
    mech = w.hello["mechanisms"]
    scratch = mech["scratch"]
    if scratch and os.path.isdir(scratch):
        shutil.rmtree(scratch, ignore_errors=True)
    for _ in range(50):  # leaves empty out as the worker's PID namespace finishes dying
        cgroups.remove(mech.get("cgroup", []))
        if not any(os.path.isdir(d) for d in mech.get("cgroup", [])):
            return
        time.sleep(0.02)


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
