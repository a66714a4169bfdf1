"""The warm worker: a long-lived trusted interpreter that supervises isolated runs.

Started by ``SandboxPool`` as ``python -s -P -S -c ... worker.main()`` (PYTHONHASHSEED=0). It
opens its cgroup (``cgroups``), enters its long-lived namespaces and builds the allow-listed
file tree (``isolation.prepare_worker``), imports the modules candidates commonly use and the
targets, freezes the GC, and forks its zygote (``zygote``) before it reads any request. Then it
serves its parent over a pipe: ``(seq, target, payload, limits, partner)`` in, ``(seq, status,
value, messages, stdout, stderr, wall_s, detail, partner_status)`` out (marshal frames; both
ends are trusted code).

A run is one child (``partner`` empty: the target gets the payload) or two (a judged run: the
target is the judge and gets the payload, ``partner`` is the candidate, which gets nothing but
the judge's calls; see ``judge`` and ``candidate``). The worker asks the zygote for the
children, writes the payload into the target's pipe, and supervises with ``poll`` over their
output, the result channel and pidfds until the target exits or a deadline passes (wall clock,
or CPU time of the whole run's process tree from its cgroup): then SIGKILL, which takes each
child's PID namespace with it. Everything a child wrote is treated as hostile: output is
capped, channel frames are decoded as plain data only. The worker never runs candidate code.
"""

from __future__ import annotations

import collections
import gc
import importlib
import io
import json
import marshal
import os
import select
import signal
import socket
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from next_jax.execution import cgroups, channel, filetree, isolation, outcome, plain, zygote

_READ_CHUNK = 1 << 16
_EXIT_GRACE_S = 2.0
_CPU_POLL_S = 0.1
_ZYGOTE_TIMEOUT_S = 30.0
_KEYS_GONE_TIMEOUT_S = 5.0
_KEPT_JUDGES = 2  # e.g. the stateless tasks' judge and the last task's with a judge of its own
JUDGE_UID_OFFSET = 1  # a judge runs as the candidate's uid + 1: it cannot signal or trace it


class SandboxWorker:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.uid = cfg["uid"]
        self.group, why = (cgroups.open_run_group(f"{cfg['pool_pid']}_{cfg['slot']}")
                           if cfg["allow_namespaces"] else (None, "namespaces disabled"))
        self.mech = isolation.prepare_worker(cfg["scratch_bytes"], cfg["allow_namespaces"],
                                             filetree.allowed_paths(cfg["preload"]), cfg.get("hide", ()))
        if self.group is None:
            self.mech.warnings.append(
                f"no cgroup for per-run limits ({why}): memory, CPU and process limits are "
                "per process (rlimits), so a run that forks can use a multiple of them")
        self.pidns = isolation.PidNamespaceFork() if self.mech.pid_namespace else None
        self.nproc_base = 0 if self.mech.uid_drop else isolation.count_processes_of_uid(os.getuid())
        self.targets: Dict[str, Callable] = {}
        isolation.set_no_new_privs()
        isolation.set_no_core_dumps()
        isolation.set_short_time_slice()
        self.workdir = os.path.join(self.mech.scratch, "work")
        self._prepare_child_state()
        self.zygote: Optional[socket.socket] = None
        self.broken = ""
        # Children whose exit status is not needed (killed at the end of their run): the
        # zygote is told with the next spawn and reaps them without keeping the status.
        self.zombies: List[int] = []
        self.limits_set: tuple = ()
        self.cpu_mark = self.group.cpu_seconds() if self.group else 0.0
        self.kernel_mark = self.group.kernel_bytes() if self.group else 0
        self.file_budget = isolation.run_file_budget()
        try:
            self.key_users_fd = os.open("/proc/key-users", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.key_users_fd = -1
        # A file-table slot costs at least a struct file (256 bytes of slab charged to the
        # run's cgroup), so this much kernel memory bounds the files a run can hold, also
        # those no descriptor counts (a mapping keeps its file open after close()).
        self.kernel_limit = self.file_budget * isolation.FILE_SLOT_BYTES
        self.oom_mark = self.group.oom_kills() if self.group else 0
        self.spare: Optional[_Spare] = None  # a candidate forked ahead for the next judged run
        self.spare_judge: Optional[_Judge] = None  # a judge forked ahead, that has held nothing
        # group -> the judge of its last run, for its next (the last _KEPT_JUDGES groups)
        self.kept: "collections.OrderedDict[str, _Judge]" = collections.OrderedDict()
        self.last_judge_key: Optional[tuple] = None
        self.last_key: Optional[tuple] = None
        self.runs = 0  # judged runs so far: the judge tags each result with its number

    def _prepare_child_state(self) -> None:
        """Sets up, once, the process state every child inherits, so a fork has less to do."""
        os.environ.clear()
        os.environ.update({
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
            "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        })
        self.devnull = os.open("/dev/null", os.O_RDONLY)
        self.devnull_w = os.open("/dev/null", os.O_WRONLY)
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
        return fn

    def start_zygote(self, protocol_fds) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            for fd in protocol_fds:
                os.close(fd)
            zygote.serve(self, theirs)  # never returns
        theirs.close()
        ours.settimeout(_ZYGOTE_TIMEOUT_S)
        if ours.recv(16) != b"ready":  # it has joined the cgroup: the leaf is in use from now
            raise RuntimeError("the zygote did not start")
        self.zygote, self.zygote_pid = ours, pid

    def _ask(self, msg: tuple, fds=()) -> tuple:
        try:
            if fds:
                socket.send_fds(self.zygote, [marshal.dumps(msg)], list(fds))
            else:
                self.zygote.send(marshal.dumps(msg))
            data = self.zygote.recv(1 << 16)
        except OSError as e:
            self.broken = f"zygote: {e}"
            raise RuntimeError(f"the zygote did not answer ({e})") from None
        if not data:
            self.broken = "zygote died"
            raise RuntimeError("the zygote died")
        reply = marshal.loads(data)
        if reply[0] != "ok":
            raise RuntimeError(f"the zygote could not start a child: {reply[1]}")
        return reply[1:]

    def serve(self, req_fd: int, resp_fd: int) -> None:
        while not self.broken:
            frame = channel.read_frame(req_fd)
            if frame is None:
                return
            seq, target, payload, limits, partner, group = marshal.loads(frame[1])
            try:
                result = self.run_one(target, payload, limits, partner, group)
            except Exception as e:  # a bug or a resource failure here must not kill the pool
                result = ("error", None, [], "", "", 0.0, f"worker: {e.__class__.__name__}: {e}", "")
            channel.write_frame(resp_fd, 0, marshal.dumps((seq,) + result))
            self._prepare_spare()

    # ----------------------------------------------------------------------------------------

    def run_one(self, target: str, payload: Any, limits: tuple, partner: str = "",
                group: Optional[str] = None):
        t0 = time.monotonic()
        for name in (target, partner):
            if name:
                try:
                    self.resolve(name)
                except Exception as e:
                    return ("error", None, [], "", "", 0.0, f"cannot load target {name!r}: {e!r}", "")
        wanted = (limits[2] + (64 << 20), limits[4] * (2 if partner else 1) + 3)
        if self.group is not None and wanted != self.limits_set:
            self.group.set_limits(*wanted)
            self.limits_set = wanted
        workdir = "/tmp"
        if not self.mech.mount_namespace:  # no per-run tmpfs: a host dir, removed after
            workdir = self.workdir
            if os.path.lexists(workdir):
                filetree.remove_tree(workdir)
            os.mkdir(workdir, 0o700)
            if self.mech.uid_drop:
                os.chown(workdir, self.uid, self.uid)
        opened: List[int] = []

        def pipe():
            r, w = os.pipe()
            opened.extend((r, w))
            return r, w

        pids: Dict[str, int] = {}
        pinned: Dict[str, int] = {}  # role -> pidfd (-1: it ended before it could be pinned)
        judge = None
        try:
            if partner:
                judge = self._judge_for(target, limits, group)
                spare = self._candidate(partner, limits, workdir)
                pids["candidate"] = spare.pid
                pinned["candidate"] = spare.pidfd
                spare.pidfd = -1  # owned by this run now
                self.last_key = spare.key if self.mech.mount_namespace else None
                self.last_judge_key = judge.key
                opened[:] = [spare.out_r, spare.err_r, spare.req_w, spare.rep_r]
                out_r, err_r = spare.out_r, spare.err_r
                self.runs += 1
                self._wait_for_keys_of_earlier_runs()
                socket.send_fds(judge.control, [str(self.runs).encode()], [spare.req_w, spare.rep_r])
                body = marshal.dumps(payload)
                pending = _write_some(judge.pay_w, channel.HEADER.pack(len(body), 0) + body)
                res_r, pay_w = judge.res_r, judge.pay_w
                keep = {out_r, err_r}
            else:
                out_r, out_w = pipe()
                err_r, err_w = pipe()
                res_r, res_w = pipe()
                pay_r, pay_w = pipe()
                self._wait_for_keys_of_earlier_runs()
                pids["main"] = self._spawn([("single", target, limits, self.uid, workdir, 4, 4)],
                                           [out_w, err_w, res_w, pay_r])[0]
                pinned["main"] = _pidfd(pids["main"])
                keep = {out_r, err_r, res_r, pay_w}
                body = marshal.dumps(payload)
                pending = channel.HEADER.pack(len(body), 0) + body
            for fd in opened:
                if fd not in keep:
                    os.close(fd)
            opened[:] = list(keep)
            return self._supervise(pids, pinned, t0, limits, out_r, err_r, res_r, pay_w, pending,
                                   judge, group)
        except BaseException:
            if judge is not None and judge.pid and judge not in self.kept.values():
                self._drop_judge(judge)  # not handed to _supervise, or it failed
            raise
        finally:
            for fd in pinned.values():
                if fd >= 0:
                    os.close(fd)
            for fd in opened:
                os.close(fd)
            for pid in pids.values():
                self._kill(pid)
            if not self.pidns:
                self._kill_leftovers()
            if not self.mech.mount_namespace:
                filetree.remove_tree(workdir)

    def _wait_for_keys_of_earlier_runs(self) -> None:
        """Kernel keys an earlier run of this uid made die with its user namespace, but the
        kernel collects them in the background; until it has, a new run of the same uid could
        still read them. So a run's program starts only once the uid owns no key."""
        if not self.mech.uid_drop:
            return
        deadline = time.monotonic() + _KEYS_GONE_TIMEOUT_S
        while isolation.keys_of_uid(self.uid, self.key_users_fd):
            if time.monotonic() > deadline:
                raise RuntimeError(f"kernel keys of uid {self.uid} outlived its last run")
            time.sleep(0.001)

    def _judge_for(self, target: str, limits: tuple, group: Optional[str]) -> "_Judge":
        """The judge of this run: the last run's if it belongs to the same group (task) and
        ended cleanly, else one that has held nothing yet (forked ahead, or now). A judge never
        serves two groups, so nothing one task's tests change in its modules (``decimal``'s
        context, a module global, the random state) reaches another task's tests."""
        key = (target, tuple(limits[2:5]))
        judge = self.kept.pop(group, None) if group is not None else None
        if judge is not None:
            if judge.key == key and not judge.dead():
                return judge
            self._drop_judge(judge)
        spare, self.spare_judge = self.spare_judge, None
        if spare is not None:
            if spare.key == key and not spare.dead():
                return spare
            self._drop_judge(spare)
        return self._fork_ahead(judge_key=key)[0]

    def _candidate(self, partner: str, limits: tuple, workdir: str) -> "_Spare":
        """A candidate process for this run: the one forked ahead of time if it fits (same
        target and rlimits, alive), else a new one. Either way it has held nothing yet."""
        spare, self.spare = self.spare, None
        key = (partner, tuple(limits[1:5]), workdir)
        if spare is not None:
            if spare.key == key and not spare.dead():
                return spare
            self._kill(spare.pid)
            self.zombies.append(spare.pid)
            spare.close()
        return self._fork_ahead(candidate_key=key)[1]

    def _fork_ahead(self, judge_key: Optional[tuple] = None, candidate_key: Optional[tuple] = None):
        """Forks a judge, a candidate or both (one request to the zygote); returns both
        (None for the one not asked for)."""
        specs, fds, ends, owned, judge_end, theirs = [], [], [], [], None, None
        try:
            if judge_key is not None:
                target, (memory, fsize, nproc) = judge_key
                res_r, res_w = os.pipe()
                pay_r, pay_w = os.pipe()
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                judge_end = (ours, res_r, pay_w)
                owned += [res_r, pay_w]
                ends += [res_w, pay_r]
                specs.append(("judge", target, (0.0, 1e9, memory, fsize, nproc, 0, 0),
                              self.uid + JUDGE_UID_OFFSET, "/", 0, 5))
                fds += [self.devnull_w, self.devnull_w, res_w, theirs.fileno(), pay_r]
            if candidate_key is not None:
                partner, rlimits, workdir = candidate_key
                pipes = []
                for _ in range(4):  # stdout, stderr, requests, replies
                    pipes.append(os.pipe())
                    owned += pipes[-1]
                ours_c = [pipes[0][0], pipes[1][0], pipes[2][1], pipes[3][0]]
                theirs_c = [pipes[0][1], pipes[1][1], pipes[2][0], pipes[3][1]]
                owned[-8:] = ours_c
                ends += theirs_c
                specs.append(("candidate", partner, (0.0, *rlimits, 0, 0), self.uid, workdir, 0, 4))
                fds += theirs_c
            pids = self._spawn(specs, fds)
        except BaseException:
            for fd in owned + ends:
                os.close(fd)
            for sock in (judge_end[0] if judge_end else None, theirs):
                if sock is not None:
                    sock.close()
            raise
        for fd in ends:
            os.close(fd)
        judge = spare = None
        if judge_key is not None:
            theirs.close()
            pid = pids.pop(0)
            judge = _Judge(judge_key, pid, *judge_end, _pidfd(pid))
        if candidate_key is not None:
            spare = _Spare(candidate_key, pids[0], *ours_c, _pidfd(pids[0]))
        return judge, spare

    def _drop_judge(self, judge: "_Judge") -> None:
        if judge.pid:
            self._kill(judge.pid)
            self.zombies.append(judge.pid)
        judge.pid = 0
        judge.close()

    def _prepare_spare(self) -> None:
        """Forks the next candidate (and a judge, if none is waiting) while the parent reads the
        last result, so the forks and the namespace set-up are off the next run's path."""
        if self.last_key is None or self.spare is not None or self.broken:
            return
        judge_key = self.last_judge_key if self.spare_judge is None else None
        try:
            judge, self.spare = self._fork_ahead(judge_key, self.last_key)
        except Exception:
            return
        if judge is not None:
            self.spare_judge = judge

    def _spawn(self, specs: list, fds: list) -> List[int]:
        forget, self.zombies = self.zombies, []
        return self._ask(("spawn", specs, forget), fds)[0]

    def _supervise(self, pids: Dict[str, int], pinned: Dict[str, int], t0: float, limits: tuple,
                   out_fd: int,
                   err_fd: int, res_fd: int, pay_fd: int, payload: bytes,
                   judge: Optional["_Judge"] = None, group: Optional[str] = None):
        timeout_s, cpu_s, _, _, _, max_output_bytes, max_result_bytes = limits
        parser = channel.FrameParser(max_result_bytes)
        outputs = {out_fd: bytearray(), err_fd: bytearray()}
        dropped = {out_fd: 0, err_fd: 0}
        frames: list = []
        detail = ""
        killed_for = None
        # the group's counters when the last run ended
        cpu0, oom0, kernel0 = self.cpu_mark, self.oom_mark, self.kernel_mark
        next_cpu_check = t0 + _CPU_POLL_S
        exited: Dict[str, Any] = {}
        pidfds = {}
        for role, fd in list(pinned.items()):
            del pinned[role]  # closed below, with the run
            if fd < 0:
                exited[role] = True
            else:
                pidfds[fd] = role
        if judge is not None:
            pids["main"] = judge.pid
            if judge.pidfd < 0:  # it ended before it could be pinned
                exited["main"] = True
            else:
                pidfds[judge.pidfd] = "main"
        poller = select.poll()
        for fd in (res_fd, out_fd, err_fd, *pidfds):
            poller.register(fd, select.POLLIN)
        os.set_blocking(pay_fd, False)
        pending = memoryview(payload)
        if pending:
            poller.register(pay_fd, select.POLLOUT)
        open_fds = {out_fd, err_fd} if judge else {res_fd, out_fd, err_fd}
        ended_at = time.monotonic() if exited.get("main") else None  # main exited or was killed
        deadline = t0 + timeout_s
        try:
            while open_fds or ended_at is None:
                if not open_fds and "candidate" not in pids and ended_at is None and any(
                        kind != channel.KIND_MESSAGE for kind, _ in frames):
                    break  # a single child sent its result and closed everything: it is exiting
                if judge and (exited.get("main") is not None or killed_for or any(
                        kind != channel.KIND_MESSAGE for kind, _ in frames)):
                    _drain(out_fd, outputs, dropped, max_output_bytes)
                    _drain(err_fd, outputs, dropped, max_output_bytes)
                    break  # the judge is done with this run; the candidate's output decides nothing
                now = time.monotonic()
                if ended_at is None:
                    if now >= deadline:
                        killed_for = "timeout"
                    elif self.group and now >= next_cpu_check:
                        next_cpu_check = now + _CPU_POLL_S
                        if self.group.cpu_seconds() - cpu0 > cpu_s:
                            killed_for = "cpu"
                        elif self.group.kernel_bytes() - kernel0 > self.kernel_limit:
                            killed_for, detail = "error", (
                                f"the run's kernel memory (open files, mappings, processes) "
                                f"passed its limit of {self.kernel_limit >> 20} MiB")
                    if killed_for:
                        for pid in pids.values():
                            self._kill(pid)
                        ended_at = now
                elif now - ended_at > _EXIT_GRACE_S:
                    break  # writers that outlive the child (no PID namespace): stop reading
                if ended_at is None:
                    wait = min(deadline - now, _CPU_POLL_S if self.group else deadline - now)
                else:
                    wait = ended_at + _EXIT_GRACE_S - now
                for fd, ev in poller.poll(max(0.0, wait) * 1000):
                    if fd in pidfds:
                        poller.unregister(fd)
                        role = pidfds[fd]
                        exited[role] = ended_at is None  # True: it ended on its own, first
                        if role == "main" and ended_at is None:
                            ended_at = time.monotonic()
                            for pid in pids.values():  # the candidate ends with its judge
                                self._kill(pid)
                        continue
                    if fd == pay_fd:
                        try:
                            n = os.write(pay_fd, pending)
                            pending = pending[n:]
                        except (BrokenPipeError, BlockingIOError):
                            pending = pending[:0]
                        if not pending:
                            poller.unregister(pay_fd)
                        continue
                    data = os.read(fd, _READ_CHUNK)
                    if not data:
                        poller.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == res_fd:
                        if killed_for is None:
                            try:
                                new = parser.feed(data)
                                frames.extend(new if judge is None else self._this_run(new))
                            except ValueError as e:
                                killed_for, detail = "error", str(e)
                                for pid in pids.values():
                                    self._kill(pid)
                                ended_at = ended_at or time.monotonic()
                    else:
                        _keep(fd, data, outputs, dropped, max_output_bytes)
        finally:
            statuses = {}
            if judge is not None:
                if "main" in exited:  # it ended (or was killed) during the run
                    statuses["main"] = self._ask(("reap", judge.pid))
                    judge.pid = 0
                    self._drop_judge(judge)
                elif killed_for or group is None or not any(
                        kind != channel.KIND_MESSAGE for kind, _ in frames):
                    self._drop_judge(judge)  # killed, or mid-run, or not to be shared
                else:  # it may judge its group's next run
                    self.kept[group] = judge
                    while len(self.kept) > _KEPT_JUDGES:
                        self._drop_judge(self.kept.popitem(last=False)[1])
            for pidfd, role in pidfds.items():
                if judge is not None and role == "main":
                    continue
                if exited.get(role) or (role == "main" and role in exited):
                    statuses[role] = self._ask(("reap", pids[role]))  # exited: does not wait
                else:
                    self._kill(pids[role])
                    self.zombies.append(pids[role])
                os.close(pidfd)
            pids.clear()
        if killed_for == "cpu":
            killed_for, detail = "cpu", f"CPU time limit of the run ({cpu_s:.1f} s) reached"
        if self.group:
            self.cpu_mark, self.oom_mark = self.group.cpu_seconds(), self.group.oom_kills()
            self.kernel_mark = self.group.kernel_bytes()
        oom = self.oom_mark - oom0
        wall = time.monotonic() - t0
        stdout = outcome.text(outputs[out_fd], dropped[out_fd])
        stderr = outcome.text(outputs[err_fd], dropped[err_fd])
        # A main child not reaped yet either was killed (killed_for says why) or sent its
        # result and closed its pipes, i.e. is in os._exit(0).
        status, cpu_used = statuses.get("main", (0 if killed_for is None else signal.SIGKILL, 0.0))
        decided = outcome.outcome(status, cpu_used, cpu_s, frames, killed_for, detail,
                                  parser.pending, oom)
        if judge is not None and decided[0] in ("ok", "memory") and type(decided[1]) is list:
            decided = (decided[0], None, decided[1], decided[3])  # the judge's reports
        partner = ""
        if exited.get("candidate") or (judge is not None and oom):
            partner = outcome.partner_status(*statuses.get("candidate", (0, 0.0)), oom)
        return decided[:3] + (stdout, stderr, wall, decided[3], partner)

    def _this_run(self, frames: list) -> list:
        """The judge's frames that belong to the current run, its result unwrapped (a result
        of an earlier, abandoned run is dropped)."""
        out = []
        for kind, body in frames:
            if kind == channel.KIND_RESULT:
                try:
                    run, reports = plain.loads(body)
                except (plain.PlainDataError, TypeError, ValueError):
                    run, reports = self.runs, None
                if run != self.runs:
                    continue
                body = plain.dumps(reports)
            out.append((kind, body))
        return out

    def _kill_leftovers(self) -> None:
        """Without a PID namespace per run: kill whatever the run left behind."""
        isolation.reap_all_children(spare=self.zygote_pid)

    def _kill(self, pid: int) -> None:
        """SIGKILL: the PID namespace init (everything dies with it) or the process group."""
        for kill in (os.kill, os.killpg):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass


class _Spare:
    """A candidate process forked ahead of its run, and the worker's ends of its pipes."""

    def __init__(self, key: tuple, pid: int, out_r: int, err_r: int, req_w: int, rep_r: int,
                 pidfd: int):
        self.key, self.pid, self.pidfd = key, pid, pidfd
        self.out_r, self.err_r, self.req_w, self.rep_r = out_r, err_r, req_w, rep_r

    def dead(self) -> bool:
        return self.pidfd < 0 or bool(select.select([self.pidfd], [], [], 0)[0])

    def close(self) -> None:
        for fd in (self.out_r, self.err_r, self.req_w, self.rep_r, self.pidfd):
            if fd >= 0:
                os.close(fd)


def _pidfd(pid: int) -> int:
    """A pidfd for a child the zygote just started, or -1 if it already ended (the zygote
    reaps children as they exit, so a pid must be pinned before anything waits on it)."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return -1


class _Judge:
    """The worker's end of a run's judge process (see ``judge.serve``)."""

    def __init__(self, key: tuple, pid: int, control: socket.socket, res_r: int, pay_w: int,
                 pidfd: int):
        self.key, self.pid, self.control, self.res_r, self.pay_w = key, pid, control, res_r, pay_w
        self.pidfd = pidfd

    def dead(self) -> bool:
        return self.pidfd < 0 or bool(select.select([self.pidfd], [], [], 0)[0])

    def close(self) -> None:
        self.control.close()
        for fd in (self.res_r, self.pay_w, self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.res_r = self.pay_w = self.pidfd = -1


def _write_some(fd: int, data: bytes) -> bytes:
    """Writes what a non-blocking pipe takes now; returns the rest."""
    os.set_blocking(fd, False)
    try:
        return data[os.write(fd, data):]
    except (BlockingIOError, BrokenPipeError):  # full, or the judge is gone (seen by supervise)
        return data


def _keep(fd: int, data: bytes, outputs: dict, dropped: dict, cap: int) -> None:
    buf = outputs[fd]
    room = cap - len(buf)
    if room > 0:
        buf += data[:room]
    dropped[fd] += max(0, len(data) - room)


def _drain(fd: int, outputs: dict, dropped: dict, cap: int) -> None:
    """Reads what is already in a pipe, without waiting for more."""
    os.set_blocking(fd, False)
    for _ in range(64):
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if not data:
            return
        _keep(fd, data, outputs, dropped, cap)


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
    failed = []
    for name in cfg["preload"]:  # before the file tree is restricted: it decides what is shown
        try:
            importlib.import_module(name)
        except Exception as e:
            failed.append(f"{name}: {e.__class__.__name__}: {e}")
    worker = SandboxWorker(cfg)
    for target in list(cfg.get("targets", ())) + [JUDGE_TARGET, CANDIDATE_TARGET]:
        try:
            worker.resolve(target)
        except Exception as e:
            failed.append(f"{target}: {e.__class__.__name__}: {e}")
    gc.collect()
    gc.freeze()
    worker.start_zygote((req_fd, resp_fd))
    # /proc is the host's, so /proc/self names our pid there even as a namespace's init.
    mech = worker.mech.to_plain()
    mech["cgroup"] = worker.group.dirs if worker.group else []
    hello = {"pid": int(os.readlink("/proc/self")), "uid": worker.uid, "mechanisms": mech,
             "preload_failed": failed}
    channel.write_frame(resp_fd, 0, marshal.dumps(hello))
    worker.serve(req_fd, resp_fd)  # the parent removes the scratch dir (our mountpoint)


JUDGE_TARGET = "next_jax.execution.judge:serve"
CANDIDATE_TARGET = "next_jax.execution.candidate:serve"

if __name__ == "__main__":
    main()
