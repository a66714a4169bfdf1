"""Targets that tests/execution/test_sandbox.py runs inside the sandbox (imported by workers)."""

import os
import select
import socket
import sys
import time

from next_jax.execution.sandbox import emit, uids_of_process



def _scratch_entries():
    """The working dir's entries, less the path down to a checkout that lives under /tmp (the
    sandbox re-exposes it, read-only, inside each run's own /tmp)."""
    here = os.path.abspath(__file__)
    exposed = {here.split("/")[2]} if here.startswith("/tmp/") else set()
    return sorted(n for n in os.listdir(".") if n not in exposed)

def sandbox_processes():
    """Pids of live processes running as one of this process's sandbox uids (other processes'
    sandboxes use other uids and are not counted): empty once every pool of ours is closed."""
    uids = uids_of_process(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid in uids:
                    found.append(int(name))
            except OSError:
                pass
    return found


def echo(payload):
    return payload


def not_plain(_):
    return object()


def raise_value_error(_):
    raise ValueError("boom")


def sleep(seconds):
    time.sleep(seconds)
    return "woke"


def spin(_):
    while True:
        pass


def allocate(n_bytes):
    return len(bytearray(n_bytes))


def segfault(_):
    import ctypes
    ctypes.memset(0, 1, 8)


def print_lots(n_bytes):
    chunk = "o" * 1024
    for _ in range(n_bytes // 1024):
        sys.stdout.write(chunk)
    sys.stderr.write("to stderr\n")
    return "printed"


def emit_then_sleep(n):
    for i in range(n):
        emit({"step": i})
    time.sleep(60)


def facts(_):
    """What the child can observe about its own isolation."""
    out = {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "cwd": os.getcwd(),
           "cwd_entries": _scratch_entries(), "env": dict(os.environ), "stdin": sys.stdin.read()}
    writes = {}
    for path in ("/tmp/nj_escape", "/var/tmp/nj_escape", "/dev/shm/nj_escape", "/etc/nj_escape",
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "nj_escape")):
        try:
            with open(path, "w") as f:
                f.write("x")
            writes[path] = "written"
        except OSError as e:
            writes[path] = e.__class__.__name__
    out["writes"] = writes
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1).close()
        out["network"] = "connected"
    except OSError as e:
        out["network"] = e.__class__.__name__
    with open("mine.txt", "w") as f:
        f.write("a file of my own")
    out["own_file"] = open("mine.txt").read()
    try:
        os.listdir("/root/.ssh")
        out["root_ssh"] = "listed"
    except OSError as e:
        out["root_ssh"] = e.__class__.__name__
    return out


def leave_daemon(_):
    """Double-forks a session leader that ignores SIGTERM/SIGHUP and sleeps; returns its pid."""
    import signal
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            os.write(w, b"x")
            time.sleep(1000)
        os._exit(0)
    os.read(r, 1)
    return "left a daemon"


def fork_swarm(attempts):
    """Forks up to ``attempts`` sleeping children; returns how many forks succeeded."""
    made = 0
    for _ in range(attempts):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
        made += 1
    return made


def read_paths(paths):
    out = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                out[path] = sorted(os.listdir(path))
            else:
                with open(path) as f:
                    out[path] = f.read()
        except OSError as e:
            out[path] = e.__class__.__name__
    return out


def leave_daemon_and_sleep(seconds):
    leave_daemon(None)
    time.sleep(seconds)
    return "slept"


def vm_size(_):
    with open("/proc/self/status") as f:
        return [line.strip() for line in f if line.startswith(("VmSize", "VmRSS"))]


def list_proc(_):
    return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    return ctypes, libc


def shm_write(key):
    """Creates a SysV shared memory segment ``key`` holding a marker; returns its id."""
    ctypes, libc = _libc()
    shmid = libc.shmget(key, 4096, 0o1666)  # IPC_CREAT | 0666
    addr = libc.shmat(shmid, None, 0)
    ctypes.memmove(addr, b"left by an earlier run", 22)
    return shmid


def shm_read(key):
    """The marker of segment ``key`` if it is visible, else None."""
    ctypes, libc = _libc()
    shmid = libc.shmget(key, 4096, 0)
    if shmid < 0:
        return None
    return ctypes.string_at(libc.shmat(shmid, None, 0), 22).decode()


def deep_dirs(depth):
    fd = os.open(".", os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        new = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    os.close(fd)
    return _scratch_entries()


def fork_touch(spec):
    """Forks ``n`` children that each touch ``mb`` MiB and hold it until all have touched theirs
    (so their sum is resident at once however the scheduler orders them); returns their statuses."""
    n, mb = spec
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(go_w)
            block = bytearray(mb << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            os.write(ready_w, b"1")
            os.read(go_r, 1)  # returns when the parent closes its end
            os._exit(0)
        pids.append(pid)
    os.close(ready_w)
    os.close(go_r)
    deadline, seen = time.monotonic() + 30, 0
    while seen < n and time.monotonic() < deadline:
        if select.select([ready_r], [], [], 0.5)[0]:
            chunk = os.read(ready_r, n)
            if not chunk:  # every child has exited or been killed
                break
            seen += len(chunk)
    os.close(go_w)
    return [os.waitpid(p, 0)[1] for p in pids]


def fork_spin(n):
    """Forks ``n`` spinning children and sleeps: only a limit over the whole tree stops it."""
    for _ in range(n):
        if os.fork() == 0:
            while True:
                pass
    time.sleep(60)
    return "slept"


def hold(secret):
    return len(secret)


def scan_memory(halves):
    """Whether this process's memory holds ``halves[0] + halves[1]`` as one run of bytes."""
    first, second = (h.encode() for h in halves[:2])
    with open("/proc/self/maps") as f:
        regions = [line.split() for line in f]
    import ctypes
    for r in regions:
        if not r[1].startswith("r") or (len(r) > 5 and r[5].startswith("[v")):
            continue
        start, end = (int(x, 16) for x in r[0].split("-"))
        data = ctypes.string_at(start, end - start)
        at = data.find(first)
        while at >= 0:
            if data[at + len(first):at + len(first) + len(second)] == second:
                return True
            at = data.find(first, at + 1)
    return False
