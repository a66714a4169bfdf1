"""The warm worker: a long-lived interpreter that forks one isolated child per request.

Started by ``SandboxPool`` as ``python -s -P -S -c ... worker.main()`` (PYTHONHASHSEED=0). It enters its long-lived
namespaces (``isolation.prepare_worker``), imports the modules candidates commonly use, freezes
the GC so children do not dirty the shared pages, and then serves requests from its parent over
a pipe: ``(seq, target, payload, limits)`` in, ``(seq, status, value, messages, stdout, stderr,
wall_s, detail)`` out (marshal frames; both ends are trusted code).

For each request it creates a fresh working directory, forks the child as the init of a new PID
namespace, and supervises it with ``poll`` over the child's stdout, stderr, result channel and
pidfd until it exits or the wall deadline passes (then SIGKILL, which takes the whole namespace
with it). Everything the child wrote is treated as hostile: output is capped, channel frames are
decoded as plain data only. The worker itself never runs candidate code.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import io
import json
import marshal
import os
import select
import signal
import sys
import time
from typing import Any, Callable, Dict

from next_jax.execution import channel, isolation, plain

_READ_CHUNK = 1 << 16
_CHILD_FDS = 4  # 0 stdin (/dev/null), 1 stdout, 2 stderr, 3 result channel
_EXIT_GRACE_S = 2.0


class _Worker:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.uid = cfg["uid"]
        expose = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable))]
        expose += [p for p in sys.path if p and os.path.isdir(p)]
        self.mech = isolation.prepare_worker(cfg["scratch_bytes"], cfg["allow_namespaces"], expose,
                                             cfg.get("hide", ()))
        self.pidns = isolation.PidNamespaceFork() if self.mech.pid_namespace else None
        self.nproc_base = 0 if self.mech.uid_drop else isolation.count_processes_of_uid(os.getuid())
        self.targets: Dict[str, Callable] = {}
        isolation.set_no_new_privs()
        isolation.set_no_core_dumps()
        self.workdir = os.path.join(self.mech.scratch, "work")
        self._prepare_child_state()

    def _prepare_child_state(self) -> None:
        """Sets up, once, the process state every child inherits, so a fork has less to do."""
        os.environ.clear()
        os.environ.update({
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.workdir, "TMPDIR": self.workdir,
            "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        })
        self.devnull = os.open("/dev/null", os.O_RDONLY)
        self.streams = (
            io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8"),
            io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace"),
            io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                             errors="backslashreplace", line_buffering=True),
        )
        # The worker runs in its own session, so no terminal signal reaches it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes raise OSError(EFBIG)

    def resolve(self, target: str) -> Callable:
        fn = self.targets.get(target)
        if fn is None:
            module, _, name = target.partition(":")
            if not module or not name:
                raise ValueError(f"target {target!r} is not 'package.module:function'")
            fn = getattr(importlib.import_module(module), name)
            if not callable(fn):
                raise TypeError(f"target {target!r} is not callable")
            self.targets[target] = fn
            gc.freeze()
        return fn

    def serve(self, req_fd: int, resp_fd: int) -> None:
        while True:
            frame = channel.read_frame(req_fd)
            if frame is None:
                return
            seq, target, payload, limits = marshal.loads(frame[1])
            try:
                result = self.run_one(target, payload, limits)
            except Exception as e:  # a bug or a resource failure here must not kill the pool
                result = ("error", None, [], "", "", 0.0, f"worker: {e.__class__.__name__}: {e}")
            channel.write_frame(resp_fd, 0, marshal.dumps((seq,) + result))

    # ----------------------------------------------------------------------------------------

    def run_one(self, target: str, payload: Any, limits: tuple):
        t0 = time.monotonic()
        try:
            fn = self.resolve(target)
        except Exception as e:
            return ("error", None, [], "", "", 0.0, f"cannot load target {target!r}: {e!r}")
        workdir = self.workdir  # checks run one at a time; the dir is new for each
        if os.path.lexists(workdir):
            _remove_tree(workdir)
        os.mkdir(workdir, 0o700)
        if self.mech.uid_drop:
            os.chown(workdir, self.uid, self.uid)
        pipes = [os.pipe() for _ in range(3)]  # result, stdout, stderr
        open_writers = True
        try:
            if self.pidns:
                self.pidns.before_fork()
            try:
                pid = os.fork()
            except BaseException:
                if self.pidns:
                    self.pidns.after_fork()
                raise
            if pid == 0:
                self._child(fn, payload, limits, workdir, pipes)  # never returns
            if self.pidns:
                self.pidns.after_fork()
            for _, w in pipes:
                os.close(w)
            open_writers = False
            return self._supervise(pid, t0, limits, [r for r, _ in pipes])
        finally:
            for r, w in pipes:
                os.close(r)
                if open_writers:
                    os.close(w)
            _remove_tree(workdir)

    def _child(self, fn, payload, limits, workdir, pipes) -> None:
        _, cpu_s, memory_bytes, file_size_bytes, max_processes, _, _ = limits
        try:
            os.setsid()
            wanted = [self.devnull, pipes[1][1], pipes[2][1], pipes[0][1]]
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in wanted]
            for target_fd, fd in enumerate(high):
                os.dup2(fd, target_fd)
            os.closerange(_CHILD_FDS, 1 << 16)
            os.chdir(workdir)
            isolation.set_child_limits(cpu_s, memory_bytes, file_size_bytes, max_processes,
                                       self.nproc_base)
            isolation.drop_identity(self.mech, self.uid, self.uid)
            sys.stdin, sys.stdout, sys.stderr = self.streams
            sys.__stdin__, sys.__stdout__, sys.__stderr__ = self.streams
            np = sys.modules.get("numpy")
            if np is not None:
                np.random.seed()
        except BaseException:
            try:
                import traceback
                body = ("sandbox setup failed:\n" + traceback.format_exc()).encode("utf-8", "replace")
                channel.write_frame(3, channel.KIND_ERROR, body[:8192])
            finally:
                os._exit(70)
        channel._child_fd = 3
        try:
            kind, body = channel.KIND_RESULT, plain.dumps(fn(payload))
        except BaseException:  # SystemExit, KeyboardInterrupt and MemoryError included
            kind = channel.KIND_ERROR
            try:
                import traceback
                body = traceback.format_exc().encode("utf-8", "replace")[-8192:]
            except BaseException:
                body = b"target raised an exception that could not be formatted"
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        except BaseException:
            pass
        try:
            channel.write_frame(3, kind, body)
        finally:
            os._exit(0)

    def _supervise(self, pid: int, t0: float, limits: tuple, fds):
        timeout_s, cpu_s, _, _, _, max_output_bytes, max_result_bytes = limits
        res_fd, out_fd, err_fd = fds
        parser = channel.FrameParser(max_result_bytes)
        outputs = {out_fd: bytearray(), err_fd: bytearray()}
        dropped = {out_fd: 0, err_fd: 0}
        frames = []
        detail = ""
        killed_for = None
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (res_fd, out_fd, err_fd, pidfd):
            poller.register(fd, select.POLLIN)
        open_fds = {res_fd, out_fd, err_fd}
        exited_at = None
        deadline = t0 + timeout_s
        try:
            while open_fds or exited_at is None:
                now = time.monotonic()
                if exited_at is None and now >= deadline:
                    killed_for = "timeout"
                    self._kill(pid)
                    poller.unregister(pidfd)
                    _, status, rusage = os.wait4(pid, 0)
                    if not self.pidns:
                        self._kill_leftovers()
                    exited_at = now
                if exited_at is not None and now - exited_at > _EXIT_GRACE_S:
                    break  # writers that outlive the child (no PID namespace): stop reading
                wait = (deadline if exited_at is None else exited_at + _EXIT_GRACE_S) - now
                for fd, _ in poller.poll(max(0.0, wait) * 1000):
                    if fd == pidfd:
                        poller.unregister(pidfd)
                        exited_at = time.monotonic()
                        _, status, rusage = os.wait4(pid, 0)
                        if not self.pidns:  # its descendants may still hold the pipes
                            self._kill(pid)
                            self._kill_leftovers()
                        continue
                    data = os.read(fd, _READ_CHUNK)
                    if not data:
                        poller.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == res_fd:
                        if killed_for is None:
                            try:
                                frames.extend(parser.feed(data))
                            except ValueError as e:
                                killed_for, detail = "error", str(e)
                                self._kill(pid)
                    else:
                        buf = outputs[fd]
                        room = max_output_bytes - len(buf)
                        if room > 0:
                            buf += data[:room]
                        dropped[fd] += max(0, len(data) - room)
        finally:
            os.close(pidfd)
            if exited_at is None:  # only if something above raised
                self._kill(pid)
                os.wait4(pid, 0)
        if not self.pidns:
            self._kill_leftovers()
        wall = time.monotonic() - t0
        stdout = _text(outputs[out_fd], dropped[out_fd])
        stderr = _text(outputs[err_fd], dropped[err_fd])
        outcome = _outcome(status, rusage, cpu_s, frames, killed_for, detail, parser.pending)
        return outcome[:3] + (stdout, stderr, wall, outcome[3])

    def _kill_leftovers(self) -> None:
        """Without a PID namespace per run: kill whatever the run left behind."""
        if self.mech.worker_pid_namespace:
            isolation.kill_namespace_members()
        else:
            isolation.reap_all_children()

    def _kill(self, pid: int) -> None:
        """SIGKILL: the PID namespace init (everything dies with it) or the process group."""
        for kill in (os.kill, os.killpg):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _outcome(status, rusage, cpu_s, frames, killed_for, detail, pending):
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
    if killed_for == "timeout":
        return ("timeout", None, messages, "wall-clock timeout")
    if killed_for:
        return ("error", None, messages, detail)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        used = rusage.ru_utime + rusage.ru_stime
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


def _text(buf: bytearray, dropped: int) -> str:
    text = buf.decode("utf-8", "replace")
    if dropped:
        text += f"\n[... {dropped} more bytes dropped]"
    return text


def _remove_tree(path: str) -> None:
    """Removes a child's working dir without following any link it planted (fd-relative)."""
    try:
        os.rmdir(path)  # the common case: the check wrote nothing
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for attempt in range(2):
        try:
            for root, dirs, files, rootfd in os.fwalk(path, topdown=False):
                for name in files:
                    os.unlink(name, dir_fd=rootfd)
                for name in dirs:
                    try:
                        os.rmdir(name, dir_fd=rootfd)
                    except NotADirectoryError:  # a symlink to a directory
                        os.unlink(name, dir_fd=rootfd)
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except PermissionError:  # without root: a dir the child made unreadable
            for root, dirs, _, rootfd in os.fwalk(path):
                for name in dirs:
                    try:
                        os.chmod(name, 0o700, dir_fd=rootfd, follow_symlinks=False)
                    except OSError:
                        pass


# What model-written fixes for MBPP/HumanEval-style tasks commonly import. Every module costs
# RSS in each worker and so fork time in every check; heavy ones (hashlib 3.7 MB, numpy) are left
# to the ``preload`` option, and anything else is imported by the child itself when used.
DEFAULT_PRELOAD = (
    "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
    "typing", "copy", "operator", "random", "json", "datetime",
)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    req_fd, resp_fd = cfg["req_fd"], cfg["resp_fd"]
    for fd in (req_fd, resp_fd):
        os.set_inheritable(fd, False)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray prints during preloading go to our stderr, never to the protocol
    os.close(devnull)
    worker = _Worker(cfg)
    failed = []
    for name in cfg["preload"]:
        try:
            importlib.import_module(name)
        except Exception as e:
            failed.append(f"{name}: {e.__class__.__name__}: {e}")
    for target in cfg.get("targets", ()):
        try:
            worker.resolve(target)
        except Exception as e:
            failed.append(f"{target}: {e.__class__.__name__}: {e}")
    gc.collect()
    gc.freeze()
    # /proc is the host's, so /proc/self names our pid there even as a namespace's init.
    hello = {"pid": int(os.readlink("/proc/self")), "uid": worker.uid,
             "mechanisms": worker.mech.to_plain(), "preload_failed": failed}
    channel.write_frame(resp_fd, 0, marshal.dumps(hello))
    worker.serve(req_fd, resp_fd)  # the parent removes the scratch dir (our mountpoint)


if __name__ == "__main__":
    main()
