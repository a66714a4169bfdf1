"""MBPP and EvalPlus readers: fields, malformed rows, argument shapes, expected outputs, asserts."""

import json
import os

import pytest

from next_jax.data import evalplus, mbpp
from next_jax.data.records import RecordError
from tests import REPO

SHARED = os.path.join(REPO, "..", "shared", "data")


def _mbpp_row(task_id, **kw):
    row = {"text": "Write a function to add two numbers.", "code": "def add(a, b):\r\n  return a + b",
           "task_id": task_id, "test_setup_code": "", "test_list": ["assert add(1, 2) == 3"],
           "challenge_test_list": []}
    row.update(kw)
    return row


def test_mbpp_rows_become_tasks_and_bad_rows_are_named_and_skipped(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    rows = [json.dumps(_mbpp_row(12, challenge_test_list=["assert add(-1, 1) == 0"])),
            "{not json",
            json.dumps(_mbpp_row(13, test_list="assert add(1, 2) == 3")),
            json.dumps(_mbpp_row(555, test_setup_code="import math"))]
    path.write_text("\n".join(rows) + "\n")
    errors = []
    tasks = list(mbpp.read_mbpp(str(path), on_error=errors.append))
    assert [t.task_id for t in tasks] == ["mbpp/12", "mbpp/555"]
    first = tasks[0]
    assert first.entry_point == "add" and first.buggy_code == first.reference_fix == "def add(a, b):\n  return a + b\n"
    assert first.tests == ["assert add(1, 2) == 3"]
    assert first.eval_tests == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    assert first.meta == {"problem_id": 12, "mbpp_split": "test"}
    assert tasks[1].setup_code == "import math" and tasks[1].meta["mbpp_split"] == "validation"
    assert [e.where for e in errors] == [f"{path}:2", f"{path}:3"]
    assert errors[1].field == "test_list"
    with pytest.raises(RecordError, match=rf"{path}:2"):
        list(mbpp.read_mbpp(str(path)))


def test_sanitized_mbpp_array_and_entry_point_from_tests(tmp_path):
    path = tmp_path / "sanitized-mbpp.json"
    items = [{"source_file": "x", "task_id": 602, "prompt": "Find the first repeated character.",
              "code": "def helper(c):\n    return c\ndef first_repeated_char(s):\n    return helper(s[0])",
              "test_imports": ["import math"], "test_list": ['assert first_repeated_char("abca") == "a"']},
             {"task_id": 603, "prompt": "missing code", "test_list": []}]
    path.write_text(json.dumps(items))
    errors = []
    (task,) = mbpp.read_mbpp(str(path), on_error=errors.append)
    assert task.entry_point == "first_repeated_char" and task.setup_code == "import math"
    assert task.meta["mbpp_split"] == "train"
    assert errors[0].where == f"{path}: item 1" and errors[0].field == "code"


def test_upstream_split_boundaries():
    assert [mbpp.upstream_split(i) for i in (1, 10, 11, 510, 511, 600, 601, 974)] == [
        "prompt", "prompt", "test", "test", "validation", "validation", "train", "train"]


def _plus_row(**kw):
    row = {"task_id": "Mbpp/2", "entry_point": "pair", "prompt": "'''pair'''",
           "canonical_solution": "def pair(t, xs):\n    return (t[1], t[0], len(xs))\n",
           "base_input": [[[1, 2], [[3, 4]]]], "plus_input": [[[5, 6], []]], "atol": 0,
           "assertion": "assert pair((1, 2), [(3, 4)]) == (2, 1, 1)"}
    row.update(kw)
    return row


def test_mbpp_plus_inputs_take_the_example_call_shapes(tmp_path):
    problem = evalplus.problem_from_record(_plus_row())
    assert problem.inputs == [[(1, 2), [(3, 4)]], [(5, 6), []]]
    assert problem.num_base == 1 and problem.number == 2
    assert evalplus.problem_from_record(_plus_row(), plus=False).inputs == [[(1, 2), [(3, 4)]]]
    assert evalplus.problem_from_record(_plus_row(plus_input={})).inputs == [[(1, 2), [(3, 4)]]]
    path = tmp_path / "plus.jsonl"
    path.write_text(json.dumps(_plus_row()) + "\n" + json.dumps(_plus_row(atol="x")) + "\n")
    errors = []
    assert len(list(evalplus.read_evalplus(str(path), on_error=errors.append))) == 1
    assert errors[0].where == f"{path}:2" and errors[0].field == "atol"


@pytest.mark.parametrize("value", [None, True, 3, -2.5, 1e300, float("inf"), "a'\"b", b"\x00", 1 + 2j,
                                   [1, (2,), {3}], {"k": (1, 2)}, set(), frozenset({1, 2}), ()])
def test_literal_evaluates_back_to_an_equal_value(value):
    text = evalplus.literal(value)
    back = eval(text, {"__builtins__": {"float": float, "complex": complex, "set": set, "frozenset": frozenset}})
    assert back == value and type(back) is type(value)


def test_literal_refuses_nan():
    with pytest.raises(ValueError):
        evalplus.literal([float("nan")])


def test_assert_forms():
    he = evalplus.PlusProblem(task_id="HumanEval/2", entry_point="f", program="", inputs=[], atol=0, num_base=0)
    assert evalplus.assert_for(he, [3.5], "ok", 0.5) == "assert abs(f(3.5) - 0.5) <= 1.05e-06"
    listed = evalplus.assert_for(he, [[1.0]], "ok", [0.25, 1.0]).splitlines()
    assert listed[:2] == ["out = f([1.0])", "assert len(out) == 2"] and listed[2].startswith("assert abs(out[0] - 0.25)")
    assert evalplus.assert_for(he, [1, "a"], "ok", (1, "a")) == "assert f(1, 'a') == (1, 'a')"
    zero = dict(he.__dict__, task_id="HumanEval/32", entry_point="find_zero", atol=1e-4)
    assert evalplus.assert_for(evalplus.PlusProblem(**zero), [[1, 2]], "ok", -0.5) == \
        "assert abs(poly([1, 2], find_zero([1, 2]))) <= 0.0001"
    mb = dict(he.__dict__, task_id="Mbpp/7", entry_point="find_char_long")
    assert evalplus.assert_for(evalplus.PlusProblem(**mb), ["ab cd"], "ok", ["cd"]) == \
        "assert set(find_char_long('ab cd')) == set(['cd'])"
    assert evalplus.assert_for(he, ["x"], "not_none", True) == "assert (f('x') is not None) == True"


@pytest.mark.heavy
def test_expected_outputs_run_in_the_sandbox_and_bad_inputs_are_dropped():
    from next_jax.execution.sandbox import SandboxPool

    program = ("def f(n):\n"
               "    if n < 0:\n"
               "        while True:\n"
               "            pass\n"
               "    if n == 0:\n"
               "        raise ValueError('zero')\n"
               "    if n == 1:\n"
               "        return object()\n"
               "    if n == 2:\n"
               "        return float('nan')\n"
               "    if n == 7:\n"
               "        import time\n"
               "        time.sleep(0.4)\n"
               "    return [n] * n\n")
    problem = evalplus.PlusProblem(task_id="HumanEval/900", entry_point="f", program=program,
                                   inputs=[[3], [0], [-1], [1], [2], [4], [5000], [7]], atol=0, num_base=2)
    with SandboxPool(1, targets=[evalplus.TARGET]) as pool:
        outputs = evalplus.expected_outputs(problem, pool, timeout_per_input_s=1.0, slow_s=0.2)
    assert [status for status, _ in outputs] == ["ok", "error", "timeout", "unplain", "ok", "ok", "ok", "slow"]
    assert outputs[0] == ("ok", [3, 3, 3]) and "ValueError: zero" in outputs[1][1]
    counts = {}
    tests = evalplus.eval_tests(problem, outputs, counts, max_test_chars=200)
    assert tests == ["assert f(3) == [3, 3, 3]", "assert f(4) == [4, 4, 4, 4]"]
    assert counts == {"canonical_error": 1, "canonical_timeout": 1, "canonical_unplain": 1,
                      "canonical_slow": 1, "not_expressible": 1, "too_long": 1}


@pytest.mark.skipif(not os.path.isdir(SHARED), reason=f"public datasets not at {SHARED}")
def test_real_files_read_completely():
    assert len(list(mbpp.read_mbpp(os.path.join(SHARED, "mbpp", "mbpp.jsonl")))) == 974
    assert len(list(mbpp.read_mbpp(os.path.join(SHARED, "mbpp", "sanitized-mbpp.json")))) == 427
    he = list(evalplus.read_evalplus(os.path.join(SHARED, "evalplus", "HumanEvalPlus-v0.1.10.jsonl.gz")))
    assert len(he) == 164 and sum(len(p.inputs) for p in he) == 1570 + 122683
    mb = list(evalplus.read_evalplus(os.path.join(SHARED, "evalplus", "MbppPlus-prerelease-767efcc.jsonl.gz")))
    assert len(mb) == 399
    similar = next(p for p in mb if p.task_id == "Mbpp/2")
    assert all(type(arg) is tuple for arg in similar.inputs[0])
