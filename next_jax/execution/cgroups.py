"""Per-run limits over a whole process tree with control groups (v2, else v1).

Each sandbox worker owns one leaf cgroup (``next_jax_sandbox/<pool pid>_<slot>`` under each
hierarchy).
Its zygote joins it before forking anything, so every process a run starts is in it however it
detaches, and runs of one worker follow each other, so the leaf's limits and counters are the
run's: memory (``memory.max`` / ``memory.limit_in_bytes``, swap included where the kernel
accounts it), process count (``pids.max``), CPU time (read by the worker, which kills the run
when the tree's total passes its limit) and an OOM-kill counter (the verdict says "memory").
CPU between runs: sibling leaves get equal CPU weight, and each leaf's CPU bandwidth is capped
at one CPU (``cpu.max`` / ``cpu.cfs_quota_us``), so a run that starts 60 spinning processes
(spread over every CPU with ``sched_setaffinity``) gets the same share of the machine as a run
with one and can never take a second CPU away from a concurrent run; their parent weighs as
much as one process per CPU against the machine's other processes (a whole pool cannot use
more than that anyway). A correct run's judge and candidate take turns (one runs while the
other waits for its answer), so the cap costs it nothing.

Files are opened once, before the worker makes the file tree read-only; later reads and writes
go through those descriptors. Where neither version is usable (no root, cgroups not mounted,
controllers missing) ``open_run_group`` returns None and the sandbox falls back to per-process
rlimits (RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC), which a run can multiply by forking; the pool
logs that as a degraded mechanism.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

ROOT = "/sys/fs/cgroup"
PARENT = "next_jax_sandbox"
CPU_PERIOD_US = 100_000  # the bandwidth period; a leaf's quota is one period per period (1 CPU)


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class RunGroup:
    """One worker's leaf cgroup, as open descriptors (see the module doc)."""

    def __init__(self, version: int, dirs: List[str], fds: Dict[str, int], procs: List[int]):
        self.version = version
        self.dirs = dirs  # removed by the pool once the worker is gone
        self._fds = fds
        self.procs_fds = procs

    def join(self) -> None:
        """Moves the calling process into the group (its children follow)."""
        for fd in self.procs_fds:
            os.write(fd, b"0")

    def close_procs(self) -> None:
        for fd in self.procs_fds:
            os.close(fd)
        self.procs_fds = []

    def set_limits(self, memory_bytes: int, max_processes: int) -> None:
        # memsw may never be below memory: written on both sides so either direction works.
        # pwrite at offset 0: a control file takes each write whole, whatever the offset, and
        # so does the regular file of a test's fake hierarchy.
        for key, value in (("memsw", memory_bytes), ("memory", memory_bytes),
                           ("memsw", memory_bytes), ("pids", max_processes)):
            fd = self._fds.get(key)
            if fd is not None:
                try:
                    os.pwrite(fd, str(int(value)).encode(), 0)
                except OSError:
                    pass  # e.g. memsw below the memory limit for a moment: the other one holds

    def _read(self, key: str) -> str:
        return os.pread(self._fds[key], 4096, 0).decode()

    def cpu_seconds(self) -> float:
        if self.version == 1:
            return int(self._read("cpu")) / 1e9
        for line in self._read("cpu").splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        return 0.0

    def kernel_bytes(self) -> int:
        """Kernel memory charged to the group (slab objects such as open files and mappings,
        page tables, kernel stacks); 0 where the hierarchy does not report it."""
        if "kernel" not in self._fds:
            return 0
        text = self._read("kernel")
        if self.version == 1:
            return int(text)
        parts = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            parts[name] = value
        if "kernel" in parts:  # Linux >= 5.18 sums it up
            return int(parts["kernel"])
        return sum(int(parts.get(k, 0)) for k in ("slab", "kernel_stack", "pagetables", "percpu", "sock"))

    def oom_kills(self) -> int:
        for line in self._read("oom").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0


def _cpus() -> int:
    return os.cpu_count() or 1


def _open_files(files: Dict[str, tuple]) -> Dict[str, int]:
    """Opens each (dir, name): limits for writing, counters (cpu, oom) for reading."""
    return {key: os.open(os.path.join(d, f), os.O_RDONLY if key in _COUNTERS else os.O_WRONLY)
            for key, (d, f) in files.items()}


_COUNTERS = ("cpu", "oom", "kernel")


def _open_optional(fds: Dict[str, int], key: str, path: str) -> None:
    """A counter file only some kernels have (kernel memory)."""
    if os.path.exists(path):
        fds[key] = os.open(path, os.O_RDONLY)


def _v2(name: str, root: str = ROOT) -> Optional[RunGroup]:
    """The leaf in a unified (v2) hierarchy mounted at ``root``, or None if the hierarchy does
    not offer the memory, pids and cpu controllers."""
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            available = set(f.read().split())
    except OSError:
        return None
    if not {"memory", "pids", "cpu"} <= available:
        return None
    try:  # the root may enable controllers for its children whatever processes it holds
        _write_file(os.path.join(root, "cgroup.subtree_control"), "+memory +pids +cpu")
    except OSError:
        pass  # already enabled, or not ours to enable: the next write says which
    parent = os.path.join(root, PARENT)
    os.makedirs(parent, exist_ok=True)
    _write_file(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids +cpu")
    _write_file(os.path.join(parent, "cpu.weight"), str(min(10000, 100 * _cpus())))
    _remove_empty_siblings(parent)
    leaf = os.path.join(parent, name)
    os.makedirs(leaf, exist_ok=True)
    _write_file(os.path.join(leaf, "cpu.max"), f"{CPU_PERIOD_US} {CPU_PERIOD_US}")
    fds = _open_files({"memory": (leaf, "memory.max"), "pids": (leaf, "pids.max"),
                       "cpu": (leaf, "cpu.stat"), "oom": (leaf, "memory.events")})
    _open_optional(fds, "kernel", os.path.join(leaf, "memory.stat"))
    swap = os.path.join(leaf, "memory.swap.max")
    if os.path.exists(swap):
        _write_file(swap, "0")
    procs = [os.open(os.path.join(leaf, "cgroup.procs"), os.O_WRONLY)]
    return RunGroup(2, [leaf], fds, procs)


def _v1(name: str, root: str = ROOT) -> Optional[RunGroup]:
    """The leaves in the v1 hierarchies under ``root`` (memory, pids, cpuacct and, where
    mounted, cpu), or None if one of the first three is missing."""
    leaves: Dict[str, str] = {}
    for controller in ("memory", "pids", "cpuacct", "cpu"):
        base = os.path.join(root, controller)
        if not os.path.isdir(base):
            if controller == "cpu":
                continue
            return None
        leaves[controller] = os.path.join(os.path.realpath(base), PARENT, name)
    for leaf in set(leaves.values()):
        _remove_empty_siblings(os.path.dirname(leaf))
        os.makedirs(leaf, exist_ok=True)
    if "cpu" in leaves:
        _write_file(os.path.join(os.path.dirname(leaves["cpu"]), "cpu.shares"), str(1024 * _cpus()))
        _write_file(os.path.join(leaves["cpu"], "cpu.cfs_period_us"), str(CPU_PERIOD_US))
        _write_file(os.path.join(leaves["cpu"], "cpu.cfs_quota_us"), str(CPU_PERIOD_US))
    mem, pids, acct = leaves["memory"], leaves["pids"], leaves["cpuacct"]
    fds = _open_files({"memory": (mem, "memory.limit_in_bytes"), "oom": (mem, "memory.oom_control"),
                       "pids": (pids, "pids.max"), "cpu": (acct, "cpuacct.usage")})
    _open_optional(fds, "kernel", os.path.join(mem, "memory.kmem.usage_in_bytes"))
    memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
    if os.path.exists(memsw):
        fds["memsw"] = os.open(memsw, os.O_WRONLY)
    dirs = sorted(set(leaves.values()))
    procs = [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY) for d in dirs]
    return RunGroup(1, dirs, fds, procs)


def open_run_group(name: str, root: str = ROOT) -> tuple:
    """(RunGroup or None, why not): v2 where the unified hierarchy has the controllers, else v1.
    ``name`` is ``<pool pid>_<slot>``; leaves of pools whose process is gone are removed.
    ``root`` is where the hierarchies are mounted (tests pass a fake one)."""
    if os.geteuid() != 0:
        return None, "not root"
    problems = []
    for make in (_v2, _v1):
        try:
            group = make(name, root)
        except OSError as e:
            problems.append(f"{make.__name__.strip('_')}: {e}")
            continue
        if group is not None:
            return group, ""
    return None, "; ".join(problems) or "no cgroup hierarchy with memory, pids and cpu controllers"


def _remove_empty_siblings(parent: str) -> None:
    """Leaves of pools whose process is gone (leaves are named ``<pool pid>_<slot>``); a live
    pool's leaf may be empty for a moment, before its zygote joins, so it is left alone.
    rmdir succeeds only on empty groups."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid, _, slot = name.partition("_")
        if not (pid.isdigit() and slot.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its pool is alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        try:
            os.rmdir(os.path.join(parent, name))
        except OSError:
            pass


def remove(dirs: List[str]) -> None:
    """Removes a worker's leaves once no process is left in them."""
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            pass
