"""Targets that tests/test_execution_sandbox.py runs inside the sandbox (imported by workers)."""

import os
import socket
import sys
import time

from next_jax.execution.sandbox import emit


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
           "cwd_entries": sorted(os.listdir(".")), "env": dict(os.environ), "stdin": sys.stdin.read()}
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
