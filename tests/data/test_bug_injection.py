"""Bug injection by single-site mutation, validated by the sandboxed checker; HumanEval reading."""

import ast

import pytest

from next_jax.data import bug_injection, humaneval
from next_jax.data.records import RepairTask

CODE = '''def clip(xs, lo, hi):
    # keep the values within [lo, hi]
    out = []
    for x in xs:
        if x < lo and not hi < lo:
            out.append(lo)
        elif x > hi:
            out.append(hi)
        else:
            out.append(x + 0)
    return out
'''


def test_mutants_are_single_site_parseable_and_keep_comments():
    mutants = bug_injection.candidate_mutants(CODE, "clip", seed=1)
    descriptions = {m.description for m in mutants}
    assert {"line 5: '<' -> '<='", "line 5: 'and' -> 'or'", "line 7: '>' -> '>='",
            "line 10: '+' -> '-'", "line 10: '0' -> '1'"} <= descriptions
    assert any(d.startswith("line 5: 'not ") for d in descriptions)
    for m in mutants:
        ast.parse(m.code)
        assert "# keep the values within [lo, hi]" in m.code
        before, after = CODE.splitlines(), m.code.splitlines()
        if m.operator == "dropped_statement":
            assert len(after) == len(before) - 1 and any(before[:i] + before[i + 1:] == after for i in range(len(before)))
        else:
            changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
            assert len(changed) == 1, m.description
    assert [m.code for m in mutants] == [m.code for m in bug_injection.candidate_mutants(CODE, "clip", seed=1)]
    assert [m.code for m in mutants] != [m.code for m in bug_injection.candidate_mutants(CODE, "clip", seed=2)]


def test_inject_bugs_keeps_only_mutants_a_test_catches():
    from next_jax.execution.checker import Checker

    caught = RepairTask(task_id="t/clip", source="unit", description="clip", buggy_code=CODE, entry_point="clip",
                        tests=["assert clip([0, 5, 9], 2, 6) == [2, 5, 6]", "assert clip([2, 6], 2, 6) == [2, 6]"],
                        reference_fix=CODE)
    # Every mutant of this program still passes its only test, so the task must be dropped.
    blind = RepairTask(task_id="t/blind", source="unit", description="pos", buggy_code="def pos(x):\n    return x >= 0\n",
                       entry_point="pos", tests=["assert pos(5) == True"], reference_fix="def pos(x):\n    return x >= 0\n")
    broken_reference = RepairTask(task_id="t/broken", source="unit", description="x", buggy_code=CODE, entry_point="clip",
                                  tests=["assert clip([1], 0, 2) == [5]"], reference_fix=CODE)
    with Checker(workers=1) as checker:
        out = list(bug_injection.inject_bugs([caught, blind, broken_reference], checker, seed=0, max_tries=20))
    assert [t.task_id for t in out] == ["t/clip"]
    task = out[0]
    assert task.buggy_code != CODE and task.reference_fix == CODE
    assert task.meta["bug_source"] == "mutation" and task.meta["bug"].startswith("line ")
    namespace = {}
    exec(task.buggy_code, namespace)
    with pytest.raises(Exception):
        for test in task.tests:
            exec(test, namespace)


def test_humaneval_from_package_has_spec_out_of_code():
    tasks = list(humaneval.read_humaneval())
    assert len(tasks) == 164
    first = tasks[0]
    assert first.task_id == "humaneval/0" and first.entry_point == "has_close_elements"
    assert '"""' not in first.buggy_code and "closer to each other" in first.description
    assert first.tests == first.eval_tests[:humaneval.SHOWN_TESTS]
    assert all(t.tests[0].startswith("assert ") or "check(" in t.tests[0] for t in tasks)


TYPED = '''def window_max(xs, k):
    best = None
    for i in range(len(xs) - k + 1):
        total = sum(xs[i:i + k])
        if best is None or total > best:
            best = total
    return best * 1
'''


def test_every_typed_operator_applies_and_is_recorded():
    mutants = bug_injection.candidate_mutants(TYPED, "window_max", seed=3)
    by_op = {}
    for m in mutants:
        by_op.setdefault(m.operator, []).append(m)
    assert set(by_op) == set(bug_injection.OPERATORS)
    descriptions = {m.description for m in by_op["off_by_one"]}
    assert "line 3: 'len(xs) - k + 1' -> '(len(xs) - k + 1 - 1)'" in descriptions
    assert "line 4: 'i + k' -> '(i + k + 1)'" in descriptions
    assert "line 4: 'sum' -> 'len'" in {m.description for m in by_op["wrong_builtin"]}
    assert any("not (best is None or total > best)" in m.code for m in by_op["flipped_condition"])
    assert any("    return best\n" in m.code for m in by_op["wrong_return"])
    assert all("best = total" not in m.code for m in by_op["dropped_statement"] if "line 6" in m.description)
    # The first mutants cover different operators (interleaved), and the order is seeded.
    assert len({m.operator for m in mutants[:len(by_op)]}) == len(by_op)
    again = bug_injection.candidate_mutants(TYPED, "window_max", seed=3)
    assert [(m.operator, m.code) for m in again] == [(m.operator, m.code) for m in mutants]
    only = bug_injection.candidate_mutants(TYPED, "window_max", operators=["comparison_swap"])
    assert only and {m.operator for m in only} == {"comparison_swap"}
    with pytest.raises(ValueError, match="unknown mutation operators"):
        bug_injection.candidate_mutants(TYPED, operators=["typo"])
