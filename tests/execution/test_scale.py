"""100,000 checks in one stream without memory growth in the executor (slow)."""

import os

import pytest

from next_jax.data.records import RepairTask, Sample
from next_jax.execution.checker import Checker

N = 100_000


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.slow
def test_100k_checks_without_memory_growth():
    task = RepairTask(task_id="t", source="scale", description="", buggy_code="", entry_point="f",
                      tests=["assert f(2) == 4", "assert f(3) == 9"])
    fixes = ["def f(x):\n    return x * x\n", "def f(x):\n    return x + x\n", None]

    def samples():
        for i in range(N):
            yield Sample(task_id="t", iteration=0, sample_id=str(i), prompt_variant="trace",
                         text="", rationale="", fix=fixes[i % 3])

    marks = {}
    statuses = {"pass": 0, "fail": 0, "no_code": 0}
    with Checker(workers=2) as checker:
        pids = checker.pool.worker_pids
        for i, v in enumerate(checker.check({"t": task}, samples()), start=1):
            statuses[v.status] += 1
            if i in (N // 10, N):
                marks[i] = [rss_kb(os.getpid())] + [rss_kb(p) for p in pids]
        assert checker.pool.worker_pids == pids  # no worker was restarted
    assert statuses == {"pass": N // 3 + 1, "fail": N // 3, "no_code": N // 3}
    growth_kb = [end - start for start, end in zip(marks[N // 10], marks[N])]
    print(f"RSS kB at {N // 10} and {N} checks (parent, workers...): {marks}")
    assert max(growth_kb) < 8 * 1024, growth_kb
