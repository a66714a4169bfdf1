"""The zygote: the one process sandboxed children are forked from.

A worker forks its zygote once, after preloading and before it ever reads a payload, so a
child starts from memory that never held another run's program, tests, output or verdict
(a fork copies all of its parent's memory, freed pages included). The zygote only forks: it
never reads a payload or a result. Its protocol with the worker is a SOCK_SEQPACKET socket:

    ('spawn', [(role, target, limits, uid, workdir, payload_fd, n_fds), ...], forget) + fds
                                                      ->  ('ok', [pid, ...]) | ('error', text)
    ('reap', pid)                                                     ->  ('ok', wait status, cpu s)

``forget`` lists earlier children whose exit status nobody will ask for. Each child's
``n_fds`` descriptors (in order) become its descriptors 1, 2, 3, ... (0 is
/dev/null); one request starts every child of a run. Roles: ``single`` (the
target gets the payload read from its descriptor ``payload_fd``; result channel on 3),
``judge`` (the same, with the candidate channel on 4 and 5) and ``candidate`` (no payload; it
talks to the judge over 3 and 4 and reports nothing to the worker). Each child is the init of a
fresh PID namespace (its death kills everything it started) in a new session, chrooted into the
allow-listed file tree, with rlimits, its own uid and a fresh session keyring; a candidate or
single child also gets its own mount and IPC namespaces rooted in the allow-listed tree (a copy
of the worker's run root namespace) with fresh tmpfs mounts as its working dir and /dev/shm and
its own /proc, then, after the uid drop, its own user namespace.

The zygote joins the worker's cgroup and installs the seccomp filter against page-cache probes
before its first fork, so every run's processes are in the cgroup and under the filter; it also
sets the children's standard streams once (empty: it never writes to them).
"""

from __future__ import annotations

import fcntl
import marshal
import os
import select
import socket
import sys

from next_jax.execution import channel, isolation

_MAX_FDS = 16


def serve(worker, sock: socket.socket) -> None:
    """The zygote's loop (never returns). Children are reaped as soon as they exit (a child
    with its own mount namespace takes a few ms to tear it down after its pipes close, and no
    one should wait for that); ``reap`` hands out the stored status."""
    code = 0
    # No CPU pinning: a judge and its candidate hand control to each other on every call, and
    # the scheduler's synchronous wake-ups keep such a pair on one CPU by itself (150-210
    # migrations in 1,300 runs), while a pinned worker could not leave a CPU that another
    # process holds (on this 2-core machine under other jobs' load: 20-65% fewer checks a
    # second, same CPU time per check). Each run's CPU bandwidth stays capped at one CPU by its
    # cgroup, which is what keeps runs from starving each other.
    exits: dict = {}  # pid -> (wait status, cpu s) of children reaped but not asked for
    watched: dict = {}  # pidfd -> pid
    forgotten: set = set()  # children whose status nobody will ask for
    try:
        if worker.group is not None:
            worker.group.join()
            worker.group.close_procs()
        # Once here, inherited by every child (judges too: none of them needs these calls),
        # instead of a filter built, checked and compiled by the kernel in every run.
        worker.mech.page_cache_filter = isolation.deny_page_cache_probes()
        # The children's streams, set once here: replacing the interpreter's own in each child
        # finalized them there (flush and close of three text files, about 0.15 ms a run).
        # Nothing here writes to them, so every child starts with them empty.
        sys.stdin, sys.stdout, sys.stderr = worker.streams
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = worker.streams
        sock.setblocking(True)
        sock.send(b"ready")
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd in watched:
                    poller.unregister(fd)
                    pid = watched.pop(fd)
                    status = _wait(pid, fd)
                    if pid in forgotten:
                        forgotten.discard(pid)
                    else:
                        exits[pid] = status
                    continue
                msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, _MAX_FDS)
                if not msg:
                    return
                req = marshal.loads(msg)
                if req[0] == "spawn":
                    for pid in req[2]:
                        if exits.pop(pid, None) is None:
                            forgotten.add(pid)
                    pids = []
                    try:
                        for spec, child_fds in _split(req[1], fds):
                            pid = _spawn(worker, spec, child_fds)
                            pidfd = os.pidfd_open(pid)
                            watched[pidfd] = pid
                            poller.register(pidfd, select.POLLIN)
                            pids.append(pid)
                        reply = ("ok", pids)
                    except Exception as e:
                        for pid in pids:
                            os.kill(pid, 9)
                        reply = ("error", f"{e.__class__.__name__}: {e}")
                    finally:
                        for fd in fds:
                            os.close(fd)
                elif req[0] == "reap":
                    pid = req[1]
                    if pid not in exits:
                        pidfd = next(fd for fd, p in watched.items() if p == pid)
                        poller.unregister(pidfd)
                        del watched[pidfd]
                        exits[pid] = _wait(pid, pidfd)
                    reply = ("ok",) + exits.pop(pid)
                else:
                    reply = ("error", f"unknown request {req[0]!r}")
                sock.send(marshal.dumps(reply))
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _wait(pid: int, pidfd: int) -> tuple:
    os.close(pidfd)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage.ru_utime + rusage.ru_stime


def _split(specs: list, fds: list):
    """Pairs each child's spec with its share of the received descriptors."""
    at = 0
    for spec in specs:
        n = spec[-1]
        yield spec, fds[at:at + n]
        at += n


def _spawn(worker, spec: tuple, fds: list) -> int:
    role, target, limits, uid, workdir, payload_fd, _ = spec
    fn = worker.resolve(target)
    pidns = worker.pidns
    if pidns:
        pidns.before_fork()
    try:
        pid = os.fork()
    except BaseException:
        if pidns:
            pidns.after_fork()
        raise
    if pid == 0:
        _child(worker, role, fn, limits, uid, workdir, payload_fd, fds)  # never returns
    if pidns:
        pidns.after_fork()
    return pid


def _child(worker, role, fn, limits, uid, workdir, payload_fd, fds) -> None:
    _, cpu_s, memory_bytes, file_size_bytes, max_processes, _, _ = limits
    m = worker.mech
    try:
        os.setsid()
        own_root = role != "judge" and m.mount_namespace
        if own_root:
            isolation.enter_run_root_namespace(m)  # (its descriptor is closed below)
        wanted = [worker.devnull] + list(fds)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in wanted]
        for target_fd, fd in enumerate(high):
            os.dup2(fd, target_fd)
        os.closerange(len(high), 1 << 16)
        pivoted = False
        if own_root:
            workdir, pivoted = isolation.enter_run_namespaces(m, worker.cfg["scratch_bytes"], uid)
        else:
            isolation.enter_allowed_root(m)
        os.chdir(workdir)
        if os.environ.get("HOME") != workdir or os.environ.get("TMPDIR") != workdir:
            os.environ["HOME"] = os.environ["TMPDIR"] = workdir  # (the worker set "/tmp")
        isolation.set_child_limits(cpu_s, memory_bytes, file_size_bytes, max_processes,
                                   worker.nproc_base,
                                   isolation.open_files_per_process(worker.file_budget, max_processes))
        isolation.join_fresh_session_keyring()
        isolation.drop_identity(m, uid, uid)
        if pivoted and m.run_user_namespace:  # (root, and a /proc for its maps)
            isolation.enter_run_user_namespace(uid, uid)
        if own_root and not m.page_cache_filter:
            isolation.deny_page_cache_probes()
        payload = None
        if payload_fd:
            frame = channel.read_frame(payload_fd)
            os.close(payload_fd)
            payload = marshal.loads(frame[1]) if frame else None
        np = sys.modules.get("numpy")
        if np is not None:
            np.random.seed()
    except BaseException:
        _report_and_exit("sandbox setup failed:\n", role)
    if role == "candidate":
        try:
            fn(None)
        finally:
            os._exit(0)
    channel._child_fd = 3
    try:
        kind, body = channel.KIND_RESULT, _dumps_result(fn(payload))
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


def _dumps_result(value) -> bytes:
    from next_jax.execution import plain
    return plain.dumps(value)


def _report_and_exit(prefix: str, role: str) -> None:
    try:
        import traceback
        body = (prefix + traceback.format_exc()).encode("utf-8", "replace")[:8192]
        if role == "candidate":
            os.write(2, body)
        else:
            channel.write_frame(3, channel.KIND_ERROR, body)
    finally:
        os._exit(70)
