"""Targets that the isolation tests run inside the sandbox: state a run tries to leave for a
later one (kernel keyrings, files, shared memory) and resources it tries to exhaust."""

import ctypes
import os

_SYS_ADD_KEY, _SYS_KEYCTL = 248, 250  # x86_64
_KEYCTL_GET_KEYRING_ID, _KEYCTL_SETPERM, _KEYCTL_SEARCH, _KEYCTL_READ = 0, 5, 10, 11
_KEYCTL_GET_PERSISTENT = 22
KEYRINGS = {"thread": -1, "process": -2, "session": -3, "user": -4, "user_session": -5}


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _keyrings(libc):
    """Serial of every keyring a process can put a key into (-errno where it cannot)."""
    out = {}
    for name, spec in KEYRINGS.items():
        r = libc.syscall(_SYS_KEYCTL, _KEYCTL_GET_KEYRING_ID, spec, 1)
        out[name] = r if r >= 0 else -ctypes.get_errno()
    r = libc.syscall(_SYS_KEYCTL, _KEYCTL_GET_PERSISTENT, -1, KEYRINGS["process"])
    out["persistent"] = r if r >= 0 else -ctypes.get_errno()
    return out


def keys_plant(tag):
    """Adds a key named ``nj_<tag>`` readable by everyone to every keyring it can reach."""
    libc = _libc()
    planted = {}
    for name, ring in _keyrings(libc).items():
        if ring < 0:
            continue
        data = f"{tag}:{name}".encode()
        key = libc.syscall(_SYS_ADD_KEY, b"user", f"nj_{tag}_{name}".encode(), data, len(data), ring)
        if key >= 0:
            libc.syscall(_SYS_KEYCTL, _KEYCTL_SETPERM, key, 0x3F3F3F3F)
            planted[name] = key
    return planted


def keys_find(tag):
    """Every key of ``tag`` this process can find: by search in its keyrings and by serial
    from /proc/keys; returns the data read."""
    libc = _libc()
    found = set()
    buf = ctypes.create_string_buffer(256)

    def read(serial):
        n = libc.syscall(_SYS_KEYCTL, _KEYCTL_READ, serial, buf, 256)
        if n > 0 and buf.raw[:n].startswith(tag.encode()):
            found.add(buf.raw[:n].decode())

    for ring in _keyrings(libc).values():
        if ring >= 0:
            for name in list(KEYRINGS) + ["persistent"]:
                key = libc.syscall(_SYS_KEYCTL, _KEYCTL_SEARCH, ring, b"user",
                                   f"nj_{tag}_{name}".encode(), 0)
                if key >= 0:
                    read(key)
    try:
        with open("/proc/keys") as f:
            for line in f:
                read(int(line.split()[0], 16))
    except OSError:
        pass
    return sorted(found)


def pin_files(spec):
    """Forks ``procs`` children that each open, map and close a file ``per_proc`` times (the
    mapping keeps each opened file alive with no descriptor); returns how many each managed
    and why it stopped, after holding them for ``hold_s``."""
    import time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    procs, per_proc, hold_s = spec
    r, w = os.pipe()
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            n, why = 0, "done"
            try:
                for _ in range(per_proc):
                    fd = os.open(os.__file__, os.O_RDONLY)
                    addr = libc.mmap(None, 4096, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE
                    os.close(fd)
                    if addr in (None, ctypes.c_void_p(-1).value):
                        why = os.strerror(ctypes.get_errno())
                        break
                    n += 1
            except BaseException as e:
                why = type(e).__name__ + ":" + str(e)[:60]
            os.write(w, f"{n} {why}\n".encode())
            time.sleep(hold_s)
            os._exit(0)
        pids.append(pid)
    os.close(w)
    out = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        out += chunk
    for p in pids:
        os.waitpid(p, 0)
    return out.decode().splitlines()


def read_paths(spec):
    """Writes a note to each of ``spec['write']``; reads each of ``spec['read']``."""
    out = {}
    for path in spec.get("write", ()):
        with open(path, "w") as f:
            f.write("a note for a later run")
        out[path] = "written"
    for path in spec.get("read", ()):
        try:
            with open(path) as f:
                out[path] = f.read()
        except OSError as e:
            out[path] = type(e).__name__
    return out


def python_files_under(roots):
    """Python source files and package directories visible under ``roots`` (at most 50)."""
    found = []
    for root in roots:
        for here, dirs, files in os.walk(root):
            found += [os.path.join(here, d) for d in dirs if d in ("site-packages", "dist-packages")]
            found += [os.path.join(here, f) for f in files if f.endswith((".py", ".pyc"))]
            if len(found) > 50:
                return found[:50]
    return found


def open_many(n):
    """Opens ``n`` files (kept open until it returns); returns how many it could."""
    fds = []
    try:
        for _ in range(n):
            fds.append(os.open(os.__file__, os.O_RDONLY))
    except OSError as e:
        return [len(fds), e.strerror]
    finally:
        for fd in fds:
            os.close(fd)
    return [len(fds), ""]


def pool_squares(n):
    """multiprocessing.Pool in a program: POSIX semaphores in /dev/shm, worker processes."""
    import multiprocessing
    with multiprocessing.Pool(2) as p:
        return p.map(abs, range(-n, 0))


def keys_plant_and_find(tag):
    keys_plant(tag)
    return keys_find(tag)


def page_cache_probes(_):
    """How each direct page-cache probe of a read-only file fares: mincore on a mapping,
    preadv2 with RWF_NOWAIT, cachestat, posix_fadvise, /proc/self/pagemap."""
    import errno
    out = {}
    libc = _libc()
    fd = os.open(os.__file__, os.O_RDONLY)
    try:
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        addr = libc.mmap(None, 4096, 1, 2, fd, 0)
        vec = ctypes.create_string_buffer(1)
        r = libc.syscall(27, ctypes.c_void_p(addr), ctypes.c_size_t(4096), vec)
        out["mincore"] = "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
        try:
            os.preadv(fd, [bytearray(16)], 0, os.RWF_NOWAIT)
            out["preadv2_nowait"] = "ok"
        except OSError as e:
            out["preadv2_nowait"] = errno.errorcode[e.errno]
        r = libc.syscall(451, fd, ctypes.create_string_buffer(16), ctypes.create_string_buffer(64), 0)
        out["cachestat"] = "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        out["fadvise"] = "ok"
        out["read"] = len(os.pread(fd, 16, 0))
        try:
            with open("/proc/self/pagemap", "rb") as f:
                f.read(8)
            out["pagemap"] = "ok"
        except OSError as e:
            out["pagemap"] = type(e).__name__
    finally:
        os.close(fd)
    return out
