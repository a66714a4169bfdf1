"""Checker verdicts and the check CLI."""

import json
import os
import subprocess
import sys

import pytest

from next_jax.data.records import RepairTask, Sample, Verdict, read_all, write_records
from next_jax.execution.checker import Checker, CheckConfig, UnknownTaskError
from tests import REPO



def task(task_id="add", tests=None, **kw):
    kw = {"buggy_code": "def add(a, b):\n    return a - b\n", "entry_point": "add",
          "description": "add two numbers", **kw}
    return RepairTask(task_id=task_id, source="unit",
                      tests=tests or ["assert add(1, 2) == 3", "assert add(2, 2) == 4"], **kw)


def sample(fix, sample_id="s", task_id="add"):
    return Sample(task_id=task_id, iteration=0, sample_id=sample_id, prompt_variant="trace",
                  text="", rationale="", fix=fix)


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=2, options=CheckConfig(test_timeout_s=1.0)) as c:
        yield c


GOOD = "def add(a, b):\n    return a + b\n"


def check_one(checker, t, s):
    return next(checker.check({t.task_id: t}, [s]))


@pytest.mark.parametrize("fix,status,passed", [
    (GOOD, "pass", 2),
    ("def add(a, b):\n    return a + b if a != b else 0\n", "fail", 1),
    ("def add(a, b):\n    return a // 0\n", "error", 0),
    ("def add(a, b):\n    while True:\n        pass\n", "timeout", 0),
    ("def add(a, b)\n    return a\n", "syntax_error", 0),
    (None, "no_code", 0),
    ("raise ValueError('at import')\n", "error", 0),
    ("def add(a, b):\n    assert False, 'own assert'\n", "error", 0),
])
def test_statuses(checker, fix, status, passed):
    v = check_one(checker, task(), sample(fix))
    assert (v.status, v.tests_passed, v.tests_total) == (status, passed, 2), v.detail
    assert isinstance(v, Verdict) and (v.detail == "") == (status == "pass")


def test_first_failure_is_reported(checker):
    v = check_one(checker, task(), sample("def add(a, b):\n    return 3\n"))
    assert v.status == "fail" and v.tests_passed == 1
    assert "test 1" in v.detail and "add(2, 2) == 4" in v.detail and "last result: 3" in v.detail


def test_setup_code_runs_in_the_judge_and_its_objects_cross_by_value(checker):
    # MBPP-style: setup builds a tree from a class of the task's program; it runs in the judge
    # (the trusted program supplies the class), and the tree crosses to the fix's own class.
    node = "class Node:\n    def __init__(self, child=None):\n        self.child = child\n\n"
    t = task("tree", tests=["assert depth(root) == 3", "assert depth(Node()) == 1"],
             setup_code="import math\nroot = Node(Node(Node()))\n", entry_point="depth",
             buggy_code=node + "def depth(n):\n    return 0\n")
    fix = node + ("def depth(n):\n    return 0 if n is None else math.floor(1 + depth(n.child))\n")
    v = check_one(checker, t, sample(fix, task_id="tree"))
    assert v.status == "pass", v.detail
    v = check_one(checker, t, sample(node + "def depth(n):\n    return 3\n", task_id="tree"))
    assert v.status == "fail" and v.tests_passed == 1, v.detail


def test_eval_tests_option():
    t = task(eval_tests=["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(5, 5) == 11"])
    with Checker(workers=1, options=CheckConfig(tests_field="eval_tests")) as c:
        v = check_one(c, t, sample(GOOD))
    assert (v.status, v.tests_passed, v.tests_total) == ("fail", 2, 3)


def test_strict_types_option():
    t = task(tests=["assert add(1, 2) == 3"])
    fix = "def add(a, b):\n    return float(a + b)\n"
    # A program that also binds every name the equality could have had (and the entry point
    # of a test that reads it) still meets the judge's own strict equality.
    redirect = fix + "__nj_strict_eq__ = strict_eq = lambda a, b: True\n"
    t2 = task("eq", tests=["assert add(1, 2) == 3 and __nj_strict_eq__(0, 1) is False"],
              entry_point="__nj_strict_eq__", buggy_code="")
    with Checker(workers=1, options=CheckConfig(strict_types=True)) as c:
        assert check_one(c, t, sample(fix)).status == "fail"
        assert check_one(c, t, sample(redirect)).status == "fail"
        assert check_one(c, t2, sample(redirect, task_id="eq")).status in ("fail", "error")
    with Checker(workers=1) as c:
        assert check_one(c, t, sample(fix)).status == "pass"


def test_tolerance_forms_and_builtin_templates(checker):
    t = task(tests=["assert math.isclose(add(0.1, 0.2), 0.3)", "assert abs(add(0.1, 0.2) - 0.3) < 1e-9",
                    "assert sorted(add([3], [1])) == [1, 3]", "assert add(0.1, 0.2) != 0.3"],
             setup_code="import math")
    v = check_one(checker, t, sample(GOOD))
    assert (v.status, v.tests_passed) == ("pass", 4), v.detail


def test_humaneval_style_check_function(checker):
    check = ("def check(candidate):\n    assert candidate(1, 2) == 3\n"
             "    for i in range(4):\n        assert candidate(i, 1) == i + 1\n\ncheck(add)\n")
    t = task(tests=[check])
    assert check_one(checker, t, sample(GOOD)).status == "pass"
    v = check_one(checker, t, sample("def add(a, b):\n    return 3\n"))
    assert v.status == "fail" and "candidate(i, 1) == i + 1" in v.detail


def test_verdicts_keep_sample_order_with_mixed_kinds(checker):
    fixes = [None, GOOD, "def add(", GOOD.replace("+", "-"), None, GOOD]
    samples = [sample(f, sample_id=f"s{i}") for i, f in enumerate(fixes)]
    verdicts = list(checker.check({"add": task()}, samples))
    assert [v.sample_id for v in verdicts] == [s.sample_id for s in samples]
    assert [v.status for v in verdicts] == ["no_code", "pass", "syntax_error", "fail", "no_code", "pass"]


def test_unknown_task_id_is_an_error(checker):
    with pytest.raises(UnknownTaskError, match="nope"):
        list(checker.check({"add": task()}, [sample(GOOD, task_id="nope")]))


def test_task_whose_tests_do_not_parse_gets_error_verdicts(checker):
    v = check_one(checker, task(tests=["assert add(1, 2) =="]), sample(GOOD))
    assert v.status == "error" and "does not compile" in v.detail


# --------------------------------------------------------------------------------------------
# CLI


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "next_jax.execution", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_writes_one_verdict_per_sample(tmp_path):
    tasks_path, samples_path, out = tmp_path / "t.jsonl", tmp_path / "s.jsonl", tmp_path / "v.jsonl"
    write_records(str(tasks_path), [task(), task("other", tests=["assert add(0, 0) == 0"])])
    write_records(str(samples_path), [sample(GOOD, "a"), sample(None, "b"),
                                      sample("def add(a, b):\n    return 1\n", "c", task_id="other")])
    r = run_cli("--tasks", str(tasks_path), "--samples", str(samples_path), "--out", str(out),
                "--workers", "1", "--test_timeout_s", "2", "--memory_mb", "1024")
    assert r.returncode == 0, r.stderr
    verdicts = read_all(str(out), Verdict)
    assert [(v.sample_id, v.status) for v in verdicts] == [("a", "pass"), ("b", "no_code"), ("c", "fail")]


def test_cli_bad_sample_names_file_line_and_field(tmp_path):
    tasks_path, samples_path, out = tmp_path / "t.jsonl", tmp_path / "s.jsonl", tmp_path / "v.jsonl"
    write_records(str(tasks_path), [task()])
    with open(samples_path, "w") as f:
        f.write(sample(GOOD, "a").to_json() + "\n")
        f.write(json.dumps(dict(sample(GOOD, "b").to_dict(), task_id="missing")) + "\n")
    r = run_cli("--tasks", str(tasks_path), "--samples", str(samples_path), "--out", str(out))
    assert r.returncode != 0
    assert f"{samples_path}:2: field 'task_id'" in r.stderr
    assert not out.exists() and not list(tmp_path.glob("v.jsonl.*"))


def test_a_judge_stuck_past_its_alarm_is_replaced():
    # sum() over a range runs in C without checking signals: only the wall deadline stops it.
    stuck = task(tests=["assert add(sum(range(10 ** 12)), 0) == 0"])
    with Checker(workers=1, options=CheckConfig(test_timeout_s=0.5)) as c:
        assert check_one(c, stuck, sample(GOOD)).status == "timeout"
        v = check_one(c, task(), sample(GOOD))
        assert v.status == "pass", v.detail


def test_values_nested_up_to_the_limit_cross_both_ways_and_deeper_are_refused(checker):
    # In the sandbox's real processes (their stacks and recursion limits): a result 2,990 lists
    # deep compared with Python's ==, the same depth as an argument the program returns (the
    # test's own object comes back), then a result past plain.MAX_DEPTH (3,000): error.
    deep = ("e = []\nfor _ in range(2990):\n    e = [e]\n"
            "assert nest(2990) == e\nassert nest(2990, e) is e\n")
    t = task("deep", tests=[deep, "nest(3100)"], entry_point="nest")
    fix = ("def nest(n, same=None):\n    if same is not None:\n        return same\n"
           "    e = []\n    for _ in range(n):\n        e = [e]\n    return e\n")
    v = check_one(checker, t, sample(fix, task_id="deep"))
    assert (v.status, v.tests_passed) == ("error", 1) and "deeper than 3000" in v.detail, v.detail


def test_a_tests_helpers_come_from_the_first_trusted_program_that_defines_them():
    from next_jax.execution.checker import build_plan, top_level_names
    tests = ["assert add(helper(1), other(2)) == 5"]
    t = task(tests=tests, reference_fix="def add(a, b):\n    return a + b\n\ndef helper(x):\n    return x\n",
             buggy_code="def helper(x):\n    return 0\n\ndef other(x):\n    return x + 2\n",
             description="Adds two numbers; see helper().")  # prose: provides nothing
    plan = build_plan(t, CheckConfig())
    # Both programs run, the original code first, so the reference's helper wins.
    assert len(plan.trusted) == 2 and plan.names == ("add",)
    assert not build_plan(task(reference_fix="def helper(x):\n    return x\n"), CheckConfig()).trusted
    assert top_level_names("import os.path as p, sys\nif 1:\n    x = 1\ndef f():\n    y = 2\n") == {
        "p", "sys", "x", "f"}
