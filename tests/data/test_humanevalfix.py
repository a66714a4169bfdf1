"""HumanEvalFix records -> RepairTasks."""

import json
import os

import pytest

from next_jax.data import humanevalfix
from next_jax.data.records import RecordError
from tests import REPO

SHARED = os.path.join(REPO, "..", "shared", "data",
                      "humanevalpack", "humanevalpack_python.jsonl")


def _record(**kw):
    rec = dict(
        task_id="Python/7",
        declaration="def add(a, b):\n",
        buggy_solution="    return a - b\n",
        canonical_solution="    return a + b\n",
        docstring="Add two numbers.",
        entry_point="add",
        example_test="def check(add):\n    assert add(1, 2) == 3\ncheck(add)\n",
        test="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n\ncheck(add)\n",
        bug_type="operator misuse",
        failure_symptoms="incorrect output",
    )
    rec.update(kw)
    return rec


def test_record_to_task_splits_asserts_and_renames_candidate():
    task = humanevalfix.task_from_record(_record())
    assert task.task_id == "humanevalfix/7"
    assert task.buggy_code == "def add(a, b):\n    return a - b\n"
    assert task.reference_fix == "def add(a, b):\n    return a + b\n"
    assert task.tests == ["assert add(1, 2) == 3"]
    assert task.eval_tests == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    assert task.meta["bug_type"] == "operator misuse"


def test_suite_with_loops_is_kept_whole_and_called():
    suite = "def check(candidate):\n    for i in range(3):\n        assert candidate(i, 0) == i\n"
    (whole,) = humanevalfix.split_check_suite(suite, "add")
    assert whole.startswith("def check(candidate):") and whole.endswith("check(add)")
    namespace = {"add": lambda a, b: a + b}
    exec(whole, namespace)  # runs the loop and the call: the suite is a complete statement block


def test_broken_example_test_falls_back_to_full_suite_and_bad_test_is_named(tmp_path):
    task = humanevalfix.task_from_record(_record(example_test="    x = (\n"))
    assert task.tests == task.eval_tests[:humanevalfix.EXAMPLES_FALLBACK]
    assert task.meta["tests_from"] == "test"
    path = tmp_path / "hef.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record(test="def check(:\n")) + "\n")
    with pytest.raises(RecordError, match=rf"{path}:2: field 'test'"):
        list(humanevalfix.read_humanevalfix(str(path)))


@pytest.mark.skipif(not os.path.exists(SHARED), reason=f"HumanEvalPack data not at {SHARED}")
def test_real_file_reads_all_164():
    tasks = list(humanevalfix.read_humanevalfix(SHARED))
    assert len(tasks) == 164
    assert len({t.task_id for t in tasks}) == 164
    assert all(t.tests and t.eval_tests for t in tasks)
    for t in tasks:
        compile(t.buggy_code, t.task_id, "exec")
        for test in t.tests + t.eval_tests:
            compile(test, t.task_id, "exec")
