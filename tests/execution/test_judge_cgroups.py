"""The cgroup v2 path of ``cgroups``.

Machines with a unified hierarchy that offers the memory, pids and cpu controllers use it; a
machine whose controllers are all bound to v1 hierarchies (a hybrid mount, where the cgroup2
mount has none of them) cannot. So the v2 logic is covered twice: against a fake cgroupfs tree
(every file it writes and reads, the fallback when controllers are missing), and, where a
cgroup2 mount exists, for real on the kernel: joining a leaf and reading the CPU time of the
processes in it from ``cpu.stat`` (present in every v2 group, with or without controllers).
"""

import os
import time

import pytest

from next_jax.execution import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups are used only as root")


def _write(path: str, text: str = "") -> None:
    with open(path, "w") as f:
        f.write(text)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _fake_v2(root: str, controllers: str, leaf_name: str) -> str:
    """A unified hierarchy as the kernel shows it, with our parent and leaf already made (a
    real cgroupfs creates a group's files itself; plain directories do not)."""
    _write(os.path.join(root, "cgroup.controllers"), controllers + "\n")
    _write(os.path.join(root, "cgroup.subtree_control"))
    parent = os.path.join(root, cgroups.PARENT)
    leaf = os.path.join(parent, leaf_name)
    os.makedirs(leaf)
    _write(os.path.join(parent, "cgroup.subtree_control"))
    _write(os.path.join(parent, "cpu.weight"))
    # Files the code only writes start empty (a control file takes each write whole; a plain
    # file would keep the tail of a longer old value).
    for name, text in (("memory.max", ""), ("memory.swap.max", ""), ("pids.max", ""),
                       ("cpu.max", ""), ("cgroup.procs", ""),
                       ("cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"),
                       ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n")):
        _write(os.path.join(leaf, name), text)
    return leaf


def test_v2_leaf_limits_counters_and_cpu_cap_on_a_fake_hierarchy(tmp_path):
    root = str(tmp_path)
    name = f"{os.getpid()}_0"
    leaf = _fake_v2(root, "cpuset cpu io memory hugetlb pids rdma misc", name)
    parent = os.path.dirname(leaf)
    stale = os.path.join(parent, "999999999_3")  # a dead pool's leaf (no such pid) is removed
    live = os.path.join(parent, f"{os.getpid()}_7")  # a live pool's empty leaf is not
    os.mkdir(stale)
    os.mkdir(live)

    group, why = cgroups.open_run_group(name, root=root)
    assert group is not None, why
    assert (group.version, group.dirs) == (2, [leaf])
    assert not os.path.exists(stale) and os.path.isdir(live)
    assert _read(os.path.join(root, "cgroup.subtree_control")) == "+memory +pids +cpu"
    assert _read(os.path.join(parent, "cgroup.subtree_control")) == "+memory +pids +cpu"
    assert _read(os.path.join(parent, "cpu.weight")) == str(min(10000, 100 * (os.cpu_count() or 1)))
    assert _read(os.path.join(leaf, "cpu.max")) == f"{cgroups.CPU_PERIOD_US} {cgroups.CPU_PERIOD_US}"
    assert _read(os.path.join(leaf, "memory.swap.max")) == "0"

    group.set_limits(256 << 20, 131)
    assert _read(os.path.join(leaf, "memory.max")) == str(256 << 20)
    assert _read(os.path.join(leaf, "pids.max")) == "131"
    group.set_limits(300 << 20, 133)  # later runs rewrite them through the same descriptors
    assert _read(os.path.join(leaf, "memory.max")) == str(300 << 20)
    assert _read(os.path.join(leaf, "pids.max")) == "133"
    assert group.cpu_seconds() == 2.5
    assert group.oom_kills() == 1
    _write(os.path.join(leaf, "memory.events"), "low 0\nhigh 0\nmax 9\noom 5\noom_kill 3\n")
    assert group.oom_kills() == 3  # read through the descriptor opened at the start

    group.join()
    assert _read(os.path.join(leaf, "cgroup.procs")) == "0"
    group.close_procs()
    assert group.procs_fds == []


def test_v2_without_the_controllers_falls_back_and_says_why(tmp_path):
    # A hybrid mount's cgroup2 hierarchy: controllers bound to v1 are not offered here, and
    # there are no v1 hierarchies under this root either.
    root = str(tmp_path)
    _fake_v2(root, "hugetlb", "1_0")
    group, why = cgroups.open_run_group("1_0", root=root)
    assert group is None and why
    assert _read(os.path.join(root, "cgroup.subtree_control")) == ""  # nothing was enabled


def _cgroup2_mount() -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return ""


def test_v2_join_and_cpu_time_on_the_real_kernel():
    mount = _cgroup2_mount()
    if not mount:
        pytest.skip("no cgroup2 mount on this machine")
    leaf = os.path.join(mount, f"next_jax_test_{os.getpid()}")
    os.mkdir(leaf)
    try:
        fds = cgroups._open_files({"cpu": (leaf, "cpu.stat")})
        procs = [os.open(os.path.join(leaf, "cgroup.procs"), os.O_WRONLY)]
        group = cgroups.RunGroup(2, [leaf], fds, procs)
        assert group.cpu_seconds() == 0.0
        pid = os.fork()
        if pid == 0:  # joins the leaf, then spins about 0.3 s of CPU
            try:
                group.join()
                end = time.process_time() + 0.3
                while time.process_time() < end:
                    pass
            finally:
                os._exit(0)
        group.close_procs()
        _, status = os.waitpid(pid, 0)
        assert status == 0
        assert 0.25 <= group.cpu_seconds() < 5.0
        os.close(fds["cpu"])
    finally:
        for _ in range(100):  # the exited child leaves the group a moment after it is reaped
            try:
                os.rmdir(leaf)
                break
            except OSError:
                time.sleep(0.02)
    assert not os.path.exists(leaf)
