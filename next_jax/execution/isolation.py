"""Linux isolation mechanisms used by the sandbox: namespaces, mounts, rlimits, identity.

Two layers, applied at different times so that each check pays only for what must be fresh:

* once per worker (``prepare_worker``), inherited by every child it forks:
  - a new network namespace (no interface is up, so no connection can be made),
  - new IPC and UTS namespaces (no shared SysV/POSIX IPC with the host),
  - a new mount namespace, propagation made private, the whole tree remounted read-only
    recursively (``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)``) except a fresh size-capped
    tmpfs (mounted on an empty host directory ``/tmp/next_jax_sandbox_*``) that holds the
    per-check working directories and vanishes with the worker; parent directories closed to
    other users on the way to the interpreter (e.g. a 0700 /root holding pyenv) are replaced
    by a tmpfs holding bind mounts of just the interpreter's directories, so the unprivileged
    child can import the standard library but cannot read the rest of them; ``hide`` paths
    covered by an empty tmpfs (directories) or /dev/null (files);
  - a PID namespace whose init is the worker itself, so that however the worker dies (even
    SIGKILL) every process it started dies with it; no_new_privs and RLIMIT_CORE=0, inherited;
* per check (``PidNamespaceFork`` + the worker's child setup): a new PID namespace, nested in the
  worker's, whose init is the candidate process itself, so killing it (or its exit) kills every
  process it started, however it detached (setsid, double fork); then a new session, rlimits
  (CPU, address space, file size, process count), and a drop to an unprivileged uid/gid unique
  to the worker slot (so RLIMIT_NPROC counts only this candidate's processes and it can signal
  nothing outside its namespace). A candidate's own mount and IPC namespaces
  (``enter_run_namespaces``: a copy of the worker's run root namespace, whose root is the
  allow-listed tree, made once by ``pivot_root``; fresh ``/tmp`` and ``/dev/shm``, its own
  ``/proc``) and after the uid drop its own user namespace (``enter_run_user_namespace``: the
  uid's keyrings die with it) take the only ctypes calls on this path: every page a child
  touches is a copy-on-write fault, and ctypes touches many. Every child joins a fresh session
  keyring and inherits the zygote's seccomp filter against page-cache probes
  (``deny_page_cache_probes``, built once in the worker, installed once in the zygote).

When a mechanism is not available (no root, namespaces disabled, old kernel) the worker falls
back and says so in ``Mechanisms.warnings``; the pool logs each warning. Fallbacks:
not root -> a user namespace mapping our uid to 0 inside it (so the other namespaces still work)
and a capability drop in the child instead of the uid drop (RLIMIT_NPROC then counts all of our
uid's processes, so it is raised by the current count); no PID namespace per check (e.g. in a
user namespace, which may not ``setns`` back) -> the worker becomes the init of one PID namespace
for all its checks and kills every other process in it after each check; no PID namespace at all
-> the worker becomes a child subreaper and kills every process left under it after each check
(a child could then signal our other processes if it shares our uid); no mount namespace ->
the working directory is a plain temporary directory and writes elsewhere are refused only by
file permissions (the uid drop) if at all; no network namespace -> network stays reachable.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from typing import Iterable, List

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_MS_BIND = 0x1000
_MS_REC = 0x4000
_MNT_DETACH = 0x2
_MS_PRIVATE = 1 << 18
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 share this number (added in Linux 5.12)
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine, 250)
_KEYCTL_JOIN_SESSION_KEYRING = 1

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own libc symbols
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.syscall.restype = ctypes.c_long
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def prctl(option: int, arg2: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0), f"prctl({option})")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _set_mount_attr(path: str, attr_set: int, attr_clr: int, recursive: bool) -> None:
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    ret = _libc.syscall(
        _SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), _AT_RECURSIVE if recursive else 0,
        ctypes.byref(attr), ctypes.sizeof(attr),
    )
    _check(ret, f"mount_setattr {path}")


def remount_tree_readonly(path: str = "/") -> None:
    _set_mount_attr(path, _MOUNT_ATTR_RDONLY, 0, recursive=True)


class Mechanisms:
    """What isolation a worker actually has; the parent logs ``warnings``.

    (A plain class, not a dataclass: importing dataclasses would pull inspect, ast and more
    into every worker, and a bigger worker is a slower fork.)
    """

    FLAGS = ("uid_drop", "user_namespace", "run_user_namespace", "pid_namespace",
             "worker_pid_namespace",
             "mount_namespace", "readonly_root", "network_namespace", "ipc_namespace", "subreaper")

    def __init__(self):
        for name in self.FLAGS:
            setattr(self, name, False)
        self.scratch = ""
        self.allowed_root = ""
        # (stash inside the allowed root, real path) of allowed paths under /tmp, which each
        # run's own /tmp would otherwise cover (a checkout or venv that lives in /tmp).
        self.tmp_binds: list = []
        # A mount namespace (descriptor) whose root is the allow-listed tree, the host's tree
        # detached from it, made once per worker: each run's own namespace is a copy of it
        # (see ``run_root_namespace``); -1 where it could not be made.
        self.run_root_ns = -1
        # Whether the zygote installed the page-cache filter, which its children inherit.
        self.page_cache_filter = False
        self.warnings: List[str] = []

    def to_plain(self) -> dict:
        out = {name: getattr(self, name) for name in self.FLAGS}
        out.update(scratch=self.scratch, allowed_root=self.allowed_root, warnings=list(self.warnings))
        return out


def _enter_user_namespace() -> None:
    uid, gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def prepare_worker(scratch_bytes: int, allow_namespaces: bool = True, allowed: tuple = ((), (), ()),
                   hide: Iterable[str] = ()) -> Mechanisms:
    """Puts the calling worker process into its long-lived namespaces (see module doc).

    ``allowed`` is (dirs, files, covered) for ``build_allowed_root``: the only files children
    see. ``hide`` lists files and directories the child must not read even inside those (a
    directory is covered by an empty tmpfs, a file by /dev/null).
    """
    m = Mechanisms()
    m.scratch = f"/tmp/next_jax_sandbox_{os.getpid()}_{os.urandom(4).hex()}"
    os.mkdir(m.scratch, 0o700)  # 0700 until it is ours alone (a tmpfs, or the check's parent)
    os.chmod(m.scratch, 0o755)
    if os.geteuid() == 0:
        m.uid_drop = True
    elif allow_namespaces:
        try:
            _enter_user_namespace()
            m.user_namespace = True
            m.warnings.append(
                "not root: candidates run in a user namespace as our own uid with all capabilities "
                "dropped (no per-slot uid; RLIMIT_NPROC counts all of this user's processes)"
            )
        except OSError as e:
            m.warnings.append(f"not root and no user namespace ({e}): no uid drop, no namespaces")
    else:
        m.warnings.append("not root: no uid drop")
    can_ns = allow_namespaces and (m.uid_drop or m.user_namespace)
    if can_ns:
        for flag, attr, what in (
            (CLONE_NEWNET, "network_namespace", "network stays reachable"),
            (CLONE_NEWIPC | CLONE_NEWUTS, "ipc_namespace", "SysV/POSIX IPC shared with the host"),
        ):
            try:
                unshare(flag)
                setattr(m, attr, True)
            except OSError as e:
                m.warnings.append(f"no {attr.replace('_', ' ')} ({e}): {what}")
        _prepare_mounts(m, scratch_bytes, allowed, hide)
        problem = _probe_per_run_pid_namespace()
        m.pid_namespace = not problem
        if m.uid_drop and m.pid_namespace:
            why = _probe_run_user_namespace()
            m.run_user_namespace = not why
            if why:
                m.warnings.append(
                    f"no user namespace per run ({why}): kernel keys a program leaves in its "
                    "uid's user keyrings can reach the next run of the same worker")
        try:
            # Also when each run gets its own namespace: they nest in the worker's, so the
            # worker's death (however it dies) takes every child with it.
            _become_pid_namespace_init()
            m.worker_pid_namespace = True
            if problem:
                m.warnings.append(
                    f"no PID namespace per run ({problem}): the worker is the init of one PID "
                    "namespace for all its runs and kills every other process in it after each run")
        except OSError as e:
            if problem:
                m.warnings.append(f"no PID namespace ({problem}; {e}): leftover processes are "
                                  "reaped as a subreaper, and a child could signal our other processes")
    else:
        m.warnings.append("namespaces disabled: no network, mount or PID isolation")
    hide = list(hide)
    if hide and not m.mount_namespace:
        m.warnings.append(f"no mount namespace: cannot hide {hide} from the child")
    if not (m.pid_namespace or m.worker_pid_namespace):
        prctl(_PR_SET_CHILD_SUBREAPER, 1)
        m.subreaper = True
    return m


def _probe_in_child(attempt) -> str:
    """'' if ``attempt()`` succeeds in a throwaway child, else why not (its OSError, or its status)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            attempt()
            code = 0
        except OSError as e:
            os.write(w, str(e).encode()[:500])
        finally:
            os._exit(code)
    os.close(w)
    problem = os.read(r, 1000).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return problem or ("" if status == 0 else f"probe exited with status {status}")


def _probe_per_run_pid_namespace() -> str:
    """'' if this process can make each fork the init of a new PID namespace, else why not.

    Tried in a throwaway child: a failed ``setns`` back would leave this process unable to fork
    more than once.
    """
    def attempt():
        own = os.open("/proc/self/ns/pid", os.O_RDONLY)
        unshare(CLONE_NEWPID)
        setns(own, CLONE_NEWPID)

    return _probe_in_child(attempt)


def _probe_run_user_namespace() -> str:
    """'' if a child that dropped to an unprivileged uid may make a user namespace (some
    kernels or security modules forbid it), else why not; tried in a throwaway child."""
    def attempt():
        uid = 65534
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        unshare(CLONE_NEWUSER)

    return _probe_in_child(attempt)


def _become_pid_namespace_init() -> None:
    """Continues this worker as pid 1 of a new PID namespace; the old process waits and exits."""
    unshare(CLONE_NEWPID)
    pid = os.fork()
    if pid:
        os.closerange(3, 1 << 16)  # the protocol pipes now belong to the new init alone
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _prepare_mounts(m: Mechanisms, scratch_bytes: int, allowed: tuple, hide: Iterable[str]) -> None:
    try:
        unshare(CLONE_NEWNS)
        mount("none", "/", None, _MS_REC | _MS_PRIVATE)
    except OSError as e:
        m.warnings.append(f"no mount namespace ({e}): writes outside the working dir limited by permissions only")
        return
    try:
        mount("tmpfs", m.scratch, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={scratch_bytes},mode=0755")
        m.mount_namespace = True
    except OSError as e:
        m.warnings.append(f"no private tmpfs for working dirs ({e}): they live on the host's /tmp")
        return
    for path in hide:
        try:
            if os.path.isdir(path):
                mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=4k,mode=0755")
            elif os.path.exists(path):
                mount("/dev/null", path, None, _MS_BIND)
        except OSError as e:
            m.warnings.append(f"could not hide {path} ({e}): the child may read it")
    try:
        build_allowed_root(m, os.path.join(m.scratch, "root"), *allowed)
    except OSError as e:
        m.warnings.append(f"could not build the allow-listed file tree ({e}): children see "
                          "every file other users may read")
    try:
        remount_tree_readonly("/")
        _set_mount_attr(m.scratch, 0, _MOUNT_ATTR_RDONLY, recursive=False)
        m.readonly_root = True
    except OSError as e:
        m.warnings.append(f"could not make the file tree read-only ({e}): world-writable dirs stay writable")
    if m.uid_drop and m.allowed_root and m.readonly_root:
        m.run_root_ns = run_root_namespace(m.allowed_root)


def build_allowed_root(m: Mechanisms, root: str, dirs: Iterable[str], files: Iterable[str],
                       covered: Iterable[str]) -> None:
    """Builds the file tree sandboxed children chroot into: an empty tmpfs at ``root`` holding
    read-only bind mounts of ``dirs`` and ``files`` at their own paths (a symlinked path as the
    same symlink), an empty tmpfs over each of ``covered`` that exists inside them, empty
    ``/tmp`` and ``/proc`` (each run mounts its own) and a ``/dev`` with null, zero, random and
    urandom only. Made read-only with the rest of the tree by the caller."""
    os.makedirs(root, 0o755, exist_ok=True)
    mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=4m,mode=0755")
    old_umask = os.umask(0o022)
    try:
        for d in ("tmp", "proc", "dev", "dev/shm"):
            os.mkdir(os.path.join(root, d), 0o755)
        bound: set = set()
        for name in ("null", "zero", "random", "urandom"):
            _bind(f"/dev/{name}", root, bound)
        for path in sorted(set(dirs)):
            if os.path.isdir(path):
                _bind(path, root, bound)
        for path in sorted(set(files)):
            if os.path.isfile(path):
                _bind(path, root, bound)
        for i, path in enumerate(sorted(p for p in set(dirs) | set(files)
                                        if os.path.abspath(p).startswith("/tmp/") and os.path.exists(p))):
            stash = f"/.tmp_binds/{i}"
            if os.path.isdir(path):
                os.makedirs(root + stash, 0o755)
            else:
                os.makedirs(os.path.dirname(root + stash), 0o755, exist_ok=True)
                with open(root + stash, "w"):
                    pass
            mount(path, root + stash, None, _MS_BIND | _MS_REC)
            m.tmp_binds.append((stash, os.path.abspath(path)))
        for path in sorted(set(covered)):
            inside = root + os.path.realpath(path)
            if os.path.isdir(path) and os.path.isdir(inside):
                mount("tmpfs", inside, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=4k,mode=0755")
    finally:
        os.umask(old_umask)
    m.allowed_root = root


def _bind(path: str, root: str, bound: set) -> None:
    """Bind-mounts ``path`` at ``root + path``, recreating symlinks met on the way; not again
    where ``bound`` (the paths bound so far, recursively) already shows it (a directory named
    both through a symlink and directly, or one inside a bound one): every mount of the tree is
    copied into each run's own mount namespace."""
    parts = os.path.abspath(path).strip("/").split("/")
    here = ""
    for i, part in enumerate(parts):
        here += "/" + part
        inside = root + here
        if os.path.islink(here):
            link = os.readlink(here)
            if not os.path.lexists(inside):
                os.symlink(link, inside)
            rest = "/".join(parts[i + 1:])
            _bind(os.path.normpath(os.path.join(os.path.dirname(here), link, rest)), root, bound)
            return
        if i + 1 < len(parts):
            os.makedirs(inside, 0o755, exist_ok=True)
    if any(here == b or here.startswith(b + "/") for b in bound):
        return
    inside = root + here
    if os.path.isdir(here):
        os.makedirs(inside, 0o755, exist_ok=True)
    elif not os.path.exists(inside):
        os.makedirs(os.path.dirname(inside), 0o755, exist_ok=True)
        with open(inside, "w"):
            pass
    mount(here, inside, None, _MS_BIND | _MS_REC)
    bound.add(here)


def run_root_namespace(root: str) -> int:
    """A descriptor of a new mount namespace whose root is ``root`` (``pivot_root``, the rest
    of the tree detached), or -1 where the kernel refuses (e.g. a pool started in a chroot).

    Made once per worker, so a run's own mount namespace is a copy of just the allow-listed
    tree (``enter_run_namespaces``) instead of a copy of the whole tree that each run pivots
    away from and detaches: fewer mounts to copy and tear down, and no ``pivot_root`` per run
    (which visits every process on the host). A throwaway child makes it and hands the
    descriptor back, so this process never leaves its own namespace."""
    import socket
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # EOF if it fails
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ours.close()
            unshare(CLONE_NEWNS)
            ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
            os.chdir(root)
            if _libc.syscall(_SYS_PIVOT_ROOT, b".", b".") == 0:
                _check(_libc.umount2(b".", _MNT_DETACH), "umount old root")
                socket.send_fds(theirs, [b"ns"], [ns])
                code = 0
        finally:
            os._exit(code)
    theirs.close()
    fd = -1
    try:
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
        fd = fds[0] if fds else -1
    except OSError:
        pass
    finally:
        ours.close()
        _, status = os.waitpid(pid, 0)
    if fd >= 0 and status != 0:
        os.close(fd)
        fd = -1
    if fd >= 0:
        os.set_inheritable(fd, False)
    return fd


def enter_allowed_root(m: Mechanisms) -> None:
    """In a child, before its identity drop: only the allow-listed tree stays visible."""
    if m.allowed_root:
        os.chroot(m.allowed_root)
        os.chdir("/")


def enter_run_root_namespace(m: Mechanisms) -> None:
    """In a candidate child, before it closes the descriptors it does not keep: into the run
    root namespace (its root and working dir become the allow-listed tree's), which
    ``enter_run_namespaces`` then copies. Nothing where there is none."""
    if m.run_root_ns >= 0:
        setns(m.run_root_ns, CLONE_NEWNS)


def enter_run_namespaces(m: Mechanisms, scratch_bytes: int, uid: int) -> str:
    """In a candidate child (still privileged, not chrooted): mount and IPC namespaces of its
    own, with a fresh size-capped tmpfs as its working dir and another as ``/dev/shm`` (gone
    with the namespace: nothing to remove, nothing a program can plant to poison a removal),
    its own /proc, and the allow-listed tree as the namespace's root (unlike a chroot this lets
    the child make its own user namespace, see ``enter_run_user_namespace``): a copy of the
    worker's run root namespace (``run_root_namespace``), else the tree is pivoted to here
    (``pivot_root``, the host tree detached). Returns the working dir and whether the tree is
    the namespace's root (a chrooted process may not make a user namespace)."""
    # '' in a copy of the run root namespace (``enter_run_root_namespace`` came first), or where
    # the tree could not be built (the host's, in our namespace)
    root = "" if m.run_root_ns >= 0 else m.allowed_root
    unshare(CLONE_NEWNS | CLONE_NEWIPC)
    owner = f",uid={uid},gid={uid}" if m.uid_drop else ""
    mount("tmpfs", root + "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV,
          f"size={scratch_bytes},mode=0700{owner}")
    # POSIX shared memory and semaphores (multiprocessing's locks and queues) live here.
    mount("tmpfs", root + "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV,
          f"size={scratch_bytes},mode=1777")
    for stash, real in m.tmp_binds:  # allowed paths under /tmp stay visible, read-only
        at = root + real
        if os.path.isdir(root + stash):
            os.makedirs(at, 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(at), 0o755, exist_ok=True)
            with open(at, "w"):
                pass
        mount(root + stash, at, None, _MS_BIND | _MS_REC)
        mount("none", at, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    if m.pid_namespace:
        try:
            mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        except OSError:
            pass  # an empty /proc: the host's process list stays out of sight either way
    if m.run_root_ns >= 0:
        os.chdir("/")
        return "/tmp", True
    pivoted = False
    if root and m.uid_drop:
        os.chdir(root)
        # The old root stacks on "." and is detached; where "/" is no mount point (a pool
        # started in a chroot), pivot_root refuses and the child is chrooted instead.
        if _libc.syscall(_SYS_PIVOT_ROOT, b".", b".") == 0:
            _check(_libc.umount2(b".", _MNT_DETACH), "umount old root")
            pivoted = True
    if root and not pivoted:
        # Also in our own user namespace (not root), where the host's mounts are locked to
        # their mount namespace and cannot be detached.
        os.chroot(root)
    os.chdir("/")
    return "/tmp", pivoted


def join_fresh_session_keyring() -> None:
    """Replaces the inherited session keyring (shared by every child of the zygote) by a new,
    empty one that lives as long as this process tree: a key a program adds to its session
    keyring goes with it."""
    _libc.syscall(_SYS_KEYCTL, _KEYCTL_JOIN_SESSION_KEYRING, None)


def keys_of_uid(uid: int, fd: int = -1) -> int:
    """How many kernel keys ``uid`` owns (``/proc/key-users``, which root sees whole; ``fd``:
    that file held open, read from its start)."""
    try:
        text = os.pread(fd, 1 << 16, 0) if fd >= 0 else b""
        if len(text) in (0, 1 << 16):  # no fd, or more than one read holds
            with open("/proc/key-users", "rb") as f:
                text = f.read()
    except OSError:
        return 0
    for line in text.splitlines():
        owner, _, rest = line.partition(b":")
        if owner.strip() == b"%d" % uid:
            return int(rest.split()[1].split(b"/")[0])
    return 0


def enter_run_user_namespace(uid: int, gid: int) -> None:
    """After the uid drop, in a candidate's own mount namespace: a user namespace of its own
    that maps only its uid and gid. Kernel keyrings that belong to a uid (its user and user
    session keyrings, its persistent keyring) are kept per user namespace, so the ones this
    run can reach die with it instead of waiting for the next run of the same uid; and
    ``/proc/keys`` lists only keys whose owner is mapped here, so keys of other uids (other
    workers' runs) are not listed. The capabilities it gets inside cover only namespaces it
    creates itself."""
    # The uid drop made this process non-dumpable, which gives its /proc files to root; the
    # maps are written through them. Non-dumpable again after: /proc/self/pagemap (which
    # pages of a file mapping are present) stays unreadable to the program (see
    # ``deny_page_cache_probes``).
    prctl(_PR_SET_DUMPABLE, 1)
    unshare(CLONE_NEWUSER)
    for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"),
                       ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    prctl(_PR_SET_DUMPABLE, 0)


# x86_64 system call numbers of the page-cache probes a candidate may not make.
_SECCOMP_DATA_ARCH, _SECCOMP_DATA_NR, _SECCOMP_DATA_ARG5 = 4, 0, 16 + 8 * 5
_AUDIT_ARCH_X86_64 = 0xC000003E
_NR = {"mincore": 27, "fadvise64": 221, "preadv2": 327, "pwritev2": 328, "io_uring_setup": 425,
       "cachestat": 451}
_RWF_NOWAIT = 0x8
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_SYS_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _page_cache_filter() -> list:
    """A seccomp program (classic BPF) that refuses the direct page-cache probes: mincore
    (residency of a mapping's pages), cachestat (a file's cached pages), preadv2/pwritev2 with
    RWF_NOWAIT (fails on a page that is not cached), io_uring (its reads try without blocking
    first), and turns posix_fadvise (which can evict a read-only file's pages) into a no-op."""
    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JSET|K, RET|K
    errno_ = lambda e: _SECCOMP_RET_ERRNO | e  # noqa: E731
    prog = [
        (ld, 0, 0, _SECCOMP_DATA_ARCH),
        (jeq, 1, 0, _AUDIT_ARCH_X86_64),
        (ret, 0, 0, _SECCOMP_RET_ALLOW),  # another architecture: its numbers differ
        (ld, 0, 0, _SECCOMP_DATA_NR),
        (jeq, 0, 1, _NR["mincore"]), (ret, 0, 0, errno_(errno.ENOSYS)),
        (jeq, 0, 1, _NR["cachestat"]), (ret, 0, 0, errno_(errno.ENOSYS)),
        (jeq, 0, 1, _NR["io_uring_setup"]), (ret, 0, 0, errno_(errno.ENOSYS)),
        (jeq, 0, 1, _NR["fadvise64"]), (ret, 0, 0, errno_(0)),  # advice taken, nothing done
        (jeq, 1, 0, _NR["preadv2"]),
        (jeq, 0, 3, _NR["pwritev2"]),
        (ld, 0, 0, _SECCOMP_DATA_ARG5),  # flags (low 32 bits)
        (jset, 0, 1, _RWF_NOWAIT), (ret, 0, 0, errno_(errno.EOPNOTSUPP)),
        (ret, 0, 0, _SECCOMP_RET_ALLOW),
    ]
    return prog


def _built_filter():
    """The filter as the kernel takes it, built once in the worker: a child only passes its
    address (every page a child touches is a copy-on-write fault, and building ctypes
    structures touches many)."""
    if os.uname().machine != "x86_64":
        return None
    rows = _page_cache_filter()
    filters = (_SockFilter * len(rows))(*[_SockFilter(*r) for r in rows])
    prog = _SockFprog(len(rows), filters)
    return prog, filters, ctypes.c_void_p(ctypes.addressof(prog))


_FILTER = _built_filter()


def deny_page_cache_probes() -> bool:
    """Installs ``_page_cache_filter`` (inherited by every process the program starts; needs
    no_new_privs, set in the worker). Without the speculative-store-bypass mitigation seccomp
    would otherwise switch on (a slowdown, not isolation). False where unsupported."""
    if _FILTER is None:
        return False
    return _libc.syscall(_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                         _FILTER[2]) == 0


class PidNamespaceFork:
    """Makes the next fork() of this process the init of a fresh PID namespace."""

    def __init__(self):
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def before_fork(self) -> None:
        unshare(CLONE_NEWPID)

    def after_fork(self) -> None:
        setns(self._own, CLONE_NEWPID)


def children_of(pid: int) -> List[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def reap_all_children(spare: int = 0) -> int:
    """Kills and reaps every process left under this process (a subreaper or a PID namespace's
    init, so orphans come back to it) except ``spare``; returns how many it killed."""
    killed = 0
    me = os.getpid()
    for _ in range(10000):
        kids = [k for k in children_of(me) if k != spare]
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for k in kids:
            try:
                os.waitpid(k, 0)
            except ChildProcessError:
                pass
        if not kids:
            return killed
    return killed


def _drop_capabilities() -> None:
    for cap in range(64):
        try:
            prctl(_PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno == errno.EINVAL:
                break
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "capset")


FILE_SLOT_BYTES = 256  # a struct file's slab object: the least kernel memory one open file costs


def run_file_budget() -> int:
    """How many files one run may hold open: a share of the kernel's file table (file-max)
    small enough that, with about one run per CPU in parallel and twice that many, half the
    table stays free for the host."""
    try:
        with open("/proc/sys/fs/file-max") as f:
            file_max = int(f.read())
    except (OSError, ValueError):
        file_max = 1 << 20
    return max(4096, file_max // (4 * (os.cpu_count() or 1)))


def open_files_per_process(budget: int, max_processes: int) -> int:
    """RLIMIT_NOFILE such that every process a run may have, each at its limit, stays within
    the run's file budget (judge and candidate side: twice max_processes, plus spares)."""
    return max(64, min(1024, budget // (2 * max_processes + 3)))


def set_child_limits(cpu_s: float, memory_bytes: int, file_size_bytes: int, max_processes: int,
                     nproc_base: int, max_open_files: int = 1024) -> None:
    """Per-run limits, set in the child (hard = soft, so the child cannot raise them; and the
    worker could not raise its own again without CAP_SYS_RESOURCE). RLIMIT_CORE=0 is set once
    in the worker and inherited."""
    cpu = max(1, -int(-cpu_s // 1))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))
    n = nproc_base + max_processes
    resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))


_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}.get(os.uname().machine)


def set_short_time_slice(slice_ns: int = 100_000) -> bool:
    """Asks the scheduler (EEVDF, Linux >= 6.12) for short time slices, inherited by children.

    A judged run hands control between processes on every call (judge -> candidate -> judge);
    on a busy machine each hand-off otherwise waits for another task's whole slice. A short
    slice gets a woken process on the CPU sooner without raising its share of CPU time (its
    weight is unchanged). Returns False where the kernel does not support it (nothing else
    changes)."""
    if _SYS_SCHED_SETATTR is None:
        return False
    import struct
    attr = ctypes.create_string_buffer(struct.pack("=IIQiIQQQII", 56, 0, 0, os.getpriority(
        os.PRIO_PROCESS, 0), 0, slice_ns, 0, 0, 0, 0), 56)
    return _libc.syscall(_SYS_SCHED_SETATTR, 0, attr, 0) == 0


def set_no_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def set_no_new_privs() -> None:
    """No execve can gain privileges (setuid binaries); set once in the worker, inherited."""
    prctl(_PR_SET_NO_NEW_PRIVS, 1)


def drop_identity(m: Mechanisms, uid: int, gid: int) -> None:
    """Last privileged step in the child: the uid drop (or, without root, a capability drop)."""
    if m.uid_drop:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    elif m.user_namespace:
        _drop_capabilities()
    if not m.worker_pid_namespace:
        # Without a worker PID namespace nothing else kills the child if the worker dies.
        # Credential changes clear this signal, so it is set after them.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def count_processes_of_uid(uid: int) -> int:
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                pass
    return n
