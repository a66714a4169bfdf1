"""Per-run isolation of the sandbox: own /proc and SysV IPC, a scratch dir nothing can poison,
limits over the whole process tree, no data of an earlier run in a new child, and a parent
that never waits without a deadline."""

import os
import signal
import uuid

import pytest

from next_jax.execution import sandbox
from next_jax.execution.sandbox import Limits, SandboxPool

T = "tests.execution.sandbox_targets"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(1, targets=[f"{T}:echo"]) as p:
        yield p


def test_own_proc_shows_only_the_run(pool):
    if not pool.mechanisms["pid_namespace"]:
        pytest.skip("no PID namespace per run on this machine")
    assert pool.run(f"{T}:list_proc", None).value == [1]


def test_sysv_ipc_does_not_carry_over_to_the_next_run(pool):
    key = 0x4E4A0001
    first = pool.run(f"{T}:shm_write", key)
    assert first.status == "ok" and first.value >= 0, first.detail
    assert pool.run(f"{T}:shm_read", key).value is None


def test_a_deep_directory_chain_does_not_poison_later_runs(pool):
    assert pool.run(f"{T}:deep_dirs", 2500).value == ["d"]
    for _ in range(2):
        r = pool.run(f"{T}:deep_dirs", 1)
        assert (r.status, r.value) == ("ok", ["d"]), r.detail


def test_a_new_child_holds_nothing_of_an_earlier_run(pool):
    halves = [uuid.uuid4().hex, uuid.uuid4().hex]
    assert pool.run(f"{T}:hold", "".join(halves)).value == 64
    r = pool.run(f"{T}:scan_memory", halves)
    assert (r.status, r.value) == ("ok", False), r.detail
    # The scan does find the secret when the run itself was given it.
    assert pool.run(f"{T}:scan_memory", halves + ["".join(halves)]).value is True


def test_memory_limit_covers_the_process_tree(pool):
    if not pool.mechanisms["cgroup"]:
        pytest.skip("no cgroup on this machine: memory limits are per process (documented)")
    # Three children of 96 MiB each stay under a 256 MiB per-process limit, not under the run's.
    r = pool.run(f"{T}:fork_touch", [3, 96], Limits(memory_bytes=192 << 20, timeout_s=60))
    assert r.status == "memory", (r.status, r.detail)
    assert pool.run(f"{T}:fork_touch", [1, 16], Limits(memory_bytes=192 << 20)).status == "ok"


def test_cpu_limit_covers_the_process_tree(pool):
    if not pool.mechanisms["cgroup"]:
        pytest.skip("no cgroup on this machine: CPU limits are per process (documented)")
    r = pool.run(f"{T}:fork_spin", 3, Limits(cpu_s=1, timeout_s=60))
    assert r.status == "timeout" and "CPU" in r.detail, (r.status, r.detail)


def test_a_worker_that_stops_answering_is_replaced(monkeypatch):
    monkeypatch.setattr(sandbox, "_DEADLINE_SLACK_S", 1.0)
    with SandboxPool(1) as p:
        os.kill(p.worker_pids[0], signal.SIGSTOP)
        r = p.run(f"{T}:echo", 1, Limits(timeout_s=1))
        assert r.status == "error" and "worker died" in r.detail
        assert p.run(f"{T}:echo", 2).value == 2
