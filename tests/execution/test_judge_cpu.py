"""CPU isolation between concurrent runs: one run's process tree cannot take the CPU away from
a run next to it.

A candidate forks 60 setsid() busy loops spread over every CPU (sched_setaffinity); a correct,
CPU-bound candidate runs at the same time in the other worker of the pool, with the normal
per-test timeout, and must still pass. Both programs are in the hostile corpus.
"""

import os
import signal
import time

import pytest

from next_jax.data.records import RepairTask, Sample
from next_jax.execution.checker import Checker, CheckConfig
from tests.execution.sandbox_targets import sandbox_processes

HERE = os.path.join(os.path.dirname(__file__), "hostile")


def _sample(name: str) -> Sample:
    with open(os.path.join(HERE, name)) as f:
        return Sample(task_id="add", iteration=0, sample_id=name, prompt_variant="no_trace",
                      text="", rationale="", fix=f.read())


def _kill_leftovers() -> list:
    """Kills (by pid) any process still running as one of this process's sandbox uids."""
    left = sandbox_processes()
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def test_spinning_run_does_not_starve_a_concurrent_correct_run():
    task = RepairTask(task_id="add", source="hostile", description="", buggy_code="",
                      entry_point="add",
                      tests=["assert add(1, 2) == 3", "assert add(-1, 1) == 0",
                             "assert add(10, 20) == 30"])
    samples = [_sample("setsid_spinners.py"), _sample("ok_cpu_bound.py")]
    try:
        # The normal per-test timeout; two workers, so the two runs are dispatched at once.
        with Checker(workers=2, options=CheckConfig()) as checker:
            if not checker.pool.mechanisms.get("cgroup"):
                pytest.skip("no cgroup on this machine: runs share the CPU unfairly (documented)")
            spinner, correct = checker.check({"add": task}, samples)
        assert correct.status == "pass", (correct.status, correct.detail)
        assert spinner.status == "timeout", (spinner.status, spinner.detail)
        # The spinner run lasted its whole per-test timeout, so it ran beside the correct
        # run, which both workers started at once.
        assert spinner.wall_s >= CheckConfig().test_timeout_s
    finally:
        deadline = time.monotonic() + 10
        while sandbox_processes() and time.monotonic() < deadline:
            time.sleep(0.05)  # the pool is closed: its PID namespaces are finishing dying
        survivors = _kill_leftovers()
    assert survivors == [], f"sandbox processes survived the pool: {survivors}"
