"""Nothing survives a run, on either side, and no run can take what the next one needs.

Candidate side: kernel keys (every keyring a uid can reach, and /proc/keys), files in /tmp and
/dev/shm. Judge side: a task's tests that change a module's state (``decimal``'s context) do
not reach the next task's tests. Resources: open files and files kept open by mappings are
bounded per run, so a run that tries to fill the kernel's file table leaves room for the next
run and the host. Visibility: no Python package outside the allow-list. And a correct program
may use multiprocessing.Pool.
"""

import os
import threading
import time
import uuid

import pytest

from next_jax.data.records import RepairTask, Sample
from next_jax.execution import isolation
from next_jax.execution.stateless import stateless
from next_jax.execution.checker import Checker, CheckConfig
from next_jax.execution.sandbox import Limits, SandboxPool

T = "tests.execution.isolation_targets"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2, targets=[f"{T}:keys_plant"]) as p:
        if not (p.mechanisms["uid_drop"] and p.mechanisms["mount_namespace"]):
            pytest.skip("needs root and namespaces (the per-run user namespace)")
        yield p


def test_kernel_keys_do_not_reach_a_later_run_of_either_worker(pool):
    tag = uuid.uuid4().hex[:8]
    planted = pool.run(f"{T}:keys_plant_and_find", tag)
    # The probe works: the run that planted finds its keys (session, user, persistent, ...).
    assert planted.status == "ok" and len(planted.value) >= 4, (planted.value, planted.detail)
    for _ in range(3):  # the next runs of both workers, right after it and later
        found = list(pool.map(f"{T}:keys_find", [tag, tag]))
        assert [(r.status, r.value) for r in found] == [("ok", []), ("ok", [])]


def test_files_in_tmp_and_dev_shm_do_not_reach_a_later_run(pool):
    first = pool.run(f"{T}:read_paths", {"write": ["/tmp/nj_note", "/dev/shm/nj_note"]})
    assert first.status == "ok", first.detail
    later = list(pool.map(f"{T}:read_paths", [{"read": ["/tmp/nj_note", "/dev/shm/nj_note"]}] * 2))
    for r in later:
        assert r.value == {"/tmp/nj_note": "FileNotFoundError",
                           "/dev/shm/nj_note": "FileNotFoundError"}, r.value


def test_multiprocessing_pool_works_in_a_run(pool):
    r = pool.run(f"{T}:pool_squares", 5)
    assert (r.status, r.value) == ("ok", [5, 4, 3, 2, 1]), r.detail


def test_no_python_package_outside_the_allow_list_is_visible(pool):
    r = pool.run(f"{T}:python_files_under", ["/usr", "/lib", "/lib64", "/opt"])
    assert (r.status, r.value) == ("ok", []), r.value


def _file_nr() -> int:
    with open("/proc/sys/fs/file-nr") as f:
        return int(f.read().split()[0])


def test_a_run_cannot_fill_the_file_table_for_the_next_run_or_the_host(pool):
    budget = isolation.run_file_budget()
    with open("/proc/sys/fs/file-max") as f:
        file_max = int(f.read())
    # The descriptors of a run at their limit fit in its budget, which leaves the host room.
    per_process = pool.run(f"{T}:open_many", 5000).value
    assert per_process[0] == isolation.open_files_per_process(budget, Limits().max_processes) - 4
    assert budget * 2 * (os.cpu_count() or 1) <= file_max // 2
    # 12 processes each keep 60,000 files open through mappings (no descriptor counts them):
    # 720,000 files unless the run's kernel memory limit stops it.
    base, peak, stop = _file_nr(), [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], _file_nr())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = pool.run(f"{T}:pin_files", [12, 60_000, 3.0],
                     Limits(memory_bytes=256 << 20, timeout_s=60, cpu_s=60))
    finally:
        stop.set()
        watcher.join()
    assert r.status == "error" and "kernel memory" in r.detail, (r.status, r.value, r.detail)
    assert peak[0] - base < budget * 1.5, (peak[0] - base, budget)
    # The next runs of both workers open what they need; the host's table is back to normal.
    after = list(pool.map(f"{T}:open_many", [1000, 1000]))
    assert [r.value for r in after] == [[1000, ""], [1000, ""]]
    assert _file_nr() < base + 10_000


def _task(task_id, entry_point, test):
    return RepairTask(task_id=task_id, source="state", description="", buggy_code="",
                      entry_point=entry_point, tests=[test])


def _sample(task_id, name, fix):
    return Sample(task_id=task_id, iteration=0, sample_id=name, prompt_variant="no_trace",
                  text="", rationale="", fix=fix)


def test_a_tasks_tests_cannot_change_the_next_tasks_module_state():
    tasks = {
        "setter": _task("setter", "double", "import decimal\ndecimal.getcontext().prec = 6\n"
                        "import random\nrandom.seed(0)\n"
                        "assert double(decimal.Decimal('1.5')) == decimal.Decimal('3.0')\n"),
        "third": _task("third", "third", "from decimal import Decimal\n"
                       "assert third() == Decimal(1) / Decimal(3)\n"),
    }
    samples = [
        _sample("setter", "setter", "def double(x):\n    return x * 2\n"),
        _sample("third", "right", "from decimal import Decimal\n\n\ndef third():\n"
                "    return Decimal(1) / Decimal(3)\n"),
        _sample("setter", "setter again", "def double(x):\n    return x * 2\n"),
        _sample("third", "six digits", "from decimal import Decimal\n\n\ndef third():\n"
                "    return Decimal('0.333333')\n"),
    ]
    with Checker(workers=1, options=CheckConfig(test_timeout_s=5.0)) as checker:
        verdicts = [v.status for v in checker.check(tasks, samples)]
    assert verdicts == ["pass", "pass", "pass", "fail"]


def test_direct_page_cache_probes_are_refused(pool):
    # The page cache of the shared read-only files cannot be made private; what reads its
    # state directly is refused (the threat model in next_jax/execution/README.md bounds the
    # rest). A plain read still works.
    r = pool.run(f"{T}:page_cache_probes", None)
    assert r.status == "ok", r.detail
    assert r.value == {"mincore": "ENOSYS", "preadv2_nowait": "ENOTSUP", "cachestat": "ENOSYS",
                       "fadvise": "ok", "read": 16, "pagemap": "PermissionError"}


@pytest.mark.parametrize("source", [
    "import decimal\ndecimal.getcontext().prec = 6\n",
    "from decimal import getcontext\ngetcontext().prec = 6\n",
    "import random\nrandom.seed(1)\n",
    "import math\nm = math\nassert m.pi\n",
    "import sys\nsys.setrecursionlimit(100)\n",
    "def f():\n    global x\n    x = 1\n",
    "d = {}\nd['a'] = 1\n",
    "from math import *\n",
    "class A:\n    pass\n",
    "setattr(len, 'x', 1)\n",
    "type(1).x = 2\n",
    "f.__globals__.clear()\n",
    "exec('import os')\n",
    "with open('x') as f:\n    pass\n",
    "import math as m\nm.pi = 3\n",
    "@cache\ndef f():\n    pass\n",
])
def test_code_that_can_change_the_judge_is_not_stateless(source):
    assert not stateless([source])


def test_asserts_loops_helpers_and_pure_modules_are_stateless():
    test = ("import math\nfrom itertools import permutations\n\n\ndef check(candidate):\n"
            "    seen = []\n    for p in permutations([1, 2, 3]):\n        seen.append(p)\n"
            "        assert candidate(list(p)) == sorted(p), p\n"
            "    assert abs(candidate([2.0])[0] - math.sqrt(4)) < 1e-9\n"
            "    assert len(seen) == 6 and (x := sum(map(len, seen))) == 18\n\n\n"
            "check(sort_list)\n")
    assert stateless([test, "", "from typing import List\n\n\ndef helper(x: int):\n    return x\n"])


def test_a_tasks_tests_that_change_module_state_do_not_reach_its_next_sample():
    # Expected value computed before the test changes the context: every run must compute it
    # in the default context, the second sample of the task as much as the first.
    tasks = {"third": _task("third", "third", "import decimal\n"
                            "expected = decimal.Decimal(1) / decimal.Decimal(3)\n"
                            "decimal.getcontext().prec = 6\nassert third() == expected\n")}
    fix = "from decimal import Decimal\n\n\ndef third():\n    return Decimal(1) / Decimal(3)\n"
    with Checker(workers=1, options=CheckConfig(test_timeout_s=5.0)) as checker:
        verdicts = [v.status for v in checker.check(
            tasks, [_sample("third", f"s{i}", fix) for i in range(3)])]
    assert verdicts == ["pass", "pass", "pass"]
