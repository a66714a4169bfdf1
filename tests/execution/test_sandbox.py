"""The generic isolated-run primitive: statuses, limits, isolation facts, cleanup."""

import os
import shutil
import signal
import tempfile
import threading
import time

import pytest

from next_jax.execution import sandbox
from next_jax.execution.sandbox import Limits, SandboxPool, run_isolated, sandbox_uid_range
from tests.execution.sandbox_targets import sandbox_processes

T = "tests.execution.sandbox_targets"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2, targets=[f"{T}:echo"]) as p:
        yield p
    assert sandbox_processes() == []


PLAIN_VALUES = [None, True, 0, -7, 2 ** 100, 1.5, float("inf"), complex(1, -2), "text ☃", b"\x00\xff",
                [1, [2]], (1, (2,)), {"a": [1], 2: None}, {1, 2}, frozenset({"x"}), 10 ** 5000]


def test_plain_values_round_trip_exactly(pool):
    results = list(pool.map(f"{T}:echo", PLAIN_VALUES))
    assert [r.status for r in results] == ["ok"] * len(PLAIN_VALUES)
    for r, v in zip(results, PLAIN_VALUES):
        assert r.value == v and type(r.value) is type(v)


def test_non_plain_return_is_error(pool):
    r = pool.run(f"{T}:not_plain", None)
    assert r.status == "error" and "not plain data" in r.detail


def test_exception_is_error_with_traceback(pool):
    r = pool.run(f"{T}:raise_value_error", None)
    assert r.status == "error" and "ValueError: boom" in r.detail and r.value is None


def test_bad_target_is_error(pool):
    r = pool.run("no_such_module_here:f", None)
    assert r.status == "error" and "cannot load target" in r.detail


def test_wall_timeout(pool):
    r = pool.run(f"{T}:sleep", 30, Limits(timeout_s=0.5))
    assert r.status == "timeout" and "wall" in r.detail


def test_cpu_limit(pool):
    r = pool.run(f"{T}:spin", None, Limits(timeout_s=30, cpu_s=1))
    assert r.status == "timeout" and "CPU" in r.detail


def test_memory_limit(pool):
    r = pool.run(f"{T}:allocate", 3 << 30, Limits(memory_bytes=1 << 30))
    assert r.status == "memory"
    assert pool.run(f"{T}:allocate", 1 << 20, Limits(memory_bytes=1 << 30)).value == 1 << 20


def test_crash(pool):
    r = pool.run(f"{T}:segfault", None)
    assert r.status == "crash" and "SIGSEGV" in r.detail


def test_output_is_captured_and_capped(pool):
    r = pool.run(f"{T}:print_lots", 4 << 20, Limits(max_output_bytes=10_000))
    assert r.status == "ok" and r.value == "printed"
    assert r.stdout.startswith("o" * 10_000) and "more bytes dropped" in r.stdout
    assert r.stderr == "to stderr\n"


def test_emitted_messages_survive_a_timeout(pool):
    r = pool.run(f"{T}:emit_then_sleep", 3, Limits(timeout_s=1))
    assert r.status == "timeout"
    assert r.messages == [{"step": 0}, {"step": 1}, {"step": 2}]


def test_isolation_facts(pool):
    m = pool.mechanisms
    first = pool.run(f"{T}:facts", None)
    second = pool.run(f"{T}:facts", None)
    assert first.status == "ok", first.detail
    f = first.value
    assert f["cwd_entries"] == [] and second.value["cwd_entries"] == []  # fresh each time
    assert f["own_file"] == "a file of my own"
    assert f["stdin"] == ""
    assert set(f["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONIOENCODING",
                             "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
    assert f["env"]["HOME"] == f["cwd"]
    if m["uid_drop"]:
        assert f["uid"] in sandbox_uid_range() and f["uid"] in pool.uids
    if m["pid_namespace"]:
        assert f["pid"] == 1
    if m["network_namespace"]:
        assert f["network"] == "OSError"
    if m["readonly_root"]:
        own = f["writes"].pop("/tmp/nj_escape")  # /tmp is the run's own scratch
        shm = f["writes"].pop("/dev/shm/nj_escape")  # and so is /dev/shm
        assert own == shm == "written" and set(f["writes"].values()) <= {"OSError", "FileNotFoundError",
                                                                  "PermissionError"}, f["writes"]
    if m["uid_drop"] and m["mount_namespace"]:
        assert f["root_ssh"] in ("FileNotFoundError", "PermissionError")
    assert f["cwd"] == "/tmp" or not m["mount_namespace"]


def test_no_process_survives_a_daemon(pool):
    r = pool.run(f"{T}:leave_daemon", None)
    assert r.status == "ok"
    assert _wait_for(lambda: sandbox_processes() == [])  # killed; its namespace ends in moments


def test_fork_swarm_is_bounded_and_reaped(pool):
    r = pool.run(f"{T}:fork_swarm", 60, Limits(max_processes=20))
    assert r.status == "ok" and 0 < r.value < 20
    assert _wait_for(lambda: sandbox_processes() == [])


def test_map_keeps_order_over_many_runs(pool):
    values = list(range(200))
    assert [r.value for r in pool.map(f"{T}:echo", values)] == values


def test_stopping_early_keeps_the_pool_usable(pool):
    for r in pool.map(f"{T}:echo", range(50)):
        break
    assert pool.run(f"{T}:echo", "still fine").value == "still fine"


def test_payload_must_be_plain(pool):
    with pytest.raises(TypeError, match="not plain data"):
        pool.run(f"{T}:echo", object())


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)


def test_dead_worker_is_replaced():
    with SandboxPool(1) as p:
        old = p.worker_pids[0]
        os.kill(old, signal.SIGKILL)
        first = p.run(f"{T}:echo", 1)
        assert first.status == "error" and "worker died" in first.detail
        assert p.run(f"{T}:echo", 2).value == 2
        assert p.worker_pids[0] != old


def test_run_isolated_uses_a_shared_pool():
    assert run_isolated(f"{T}:echo", [1, 2]).value == [1, 2]
    assert sandbox._default_pool is not None


def test_degraded_mode_warns_and_still_reaps(caplog):
    with SandboxPool(1, allow_namespaces=False) as p:
        scratch = p.scratch_dirs
        m = p.mechanisms
        assert not m["pid_namespace"] and not m["network_namespace"] and m["subreaper"]
        assert m["warnings"]
        assert p.run(f"{T}:leave_daemon", None).status == "ok"
        assert p.run(f"{T}:fork_swarm", 10).value == 10
        assert _wait_for(lambda: sandbox_processes() == [])
    assert any("isolation degraded" in r.getMessage() for r in caplog.records)
    assert scratch and not any(os.path.exists(d) for d in scratch)


def test_only_the_allow_listed_tree_is_visible_and_hide_masks_inside_it():
    # A world-readable place outside the allow-list (pytest's tmp_path is 0700).
    base = tempfile.mkdtemp(prefix="nj_hide_test_", dir="/tmp")
    stdlib = os.path.dirname(os.__file__)
    hidden, shown = os.path.join(stdlib, "antigravity.py"), os.path.join(stdlib, "this.py")
    try:
        os.chmod(base, 0o755)
        outside = os.path.join(base, "answers.jsonl")
        with open(outside, "w") as f:
            f.write("42\n")
        os.chmod(outside, 0o644)
        with SandboxPool(1, hide=[hidden]) as p:
            if not p.mechanisms["mount_namespace"]:
                return
            seen = p.run(f"{T}:read_paths", [base, outside, hidden, shown, "/work", "/home"]).value
        assert seen[base] == seen[outside] == "FileNotFoundError"
        assert seen[hidden] == "" and "Gur Mra bs Clguba" in seen[shown]  # this.py is rot13
        assert seen["/work"] in ("FileNotFoundError", [".venv", "main"], ["main"],
                                 ["main", "wt"]), seen["/work"]  # (a worktree's checkout)
    finally:
        shutil.rmtree(base)


def _wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_killing_a_worker_kills_its_running_child():
    with SandboxPool(1) as p:
        results = []
        runner = threading.Thread(
            target=lambda: results.append(p.run(f"{T}:leave_daemon_and_sleep", 60, Limits(timeout_s=120))))
        runner.start()
        assert _wait_for(lambda: len(sandbox_processes()) >= 2)  # the child and its daemon
        os.kill(p.worker_pids[0], signal.SIGKILL)
        runner.join(60)
        assert results and results[0].status == "error" and "worker died" in results[0].detail
        assert _wait_for(lambda: sandbox_processes() == [])
        assert p.run(f"{T}:echo", 3).value == 3
