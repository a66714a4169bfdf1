"""The compact prompt and edit answer format, and the demo's template answers."""

import pytest

from next_jax.data import prompts
from next_jax.data.records import RepairTask, Trace, TracedTask
from next_jax.demo import answers, domain

BUGGY = "def f(a, b):\n    c = a + b\n    return a\n"
TASK = RepairTask(task_id="u/1", source="unit", description="d", buggy_code=BUGGY, entry_point="f",
                  tests=["assert f(1, 2) == 3"])
TRACED = TracedTask.from_repair_task(TASK, [Trace(
    test=TASK.tests[0], outcome="fail",
    traced_code="def f(a, b): # (0) a=1; b=2;\n    c = a + b # (1) c=3;\n    return a # (2) __return__=1;\n"
                "assert f(1, 2) == 3 # (3) __exception__ = AssertionError()")])


def test_compact_prompt_variants():
    traced = prompts.build_compact_prompt(TRACED, "trace")
    assert traced == TRACED.traces[0].traced_code + "\n" + prompts.COMPACT_ANSWER_HEADER + "\n"
    plain = prompts.build_compact_prompt(TRACED, "no_trace")
    assert plain == BUGGY + "assert f(1, 2) == 3\n# Fix:\n"
    assert "__return__" not in plain
    with pytest.raises(ValueError, match="u/1: the trace variant needs"):
        prompts.build_compact_prompt(TASK, "trace")
    with pytest.raises(ValueError, match="not 'proxy'"):
        prompts.build_compact_prompt(TRACED, "proxy")


def test_edit_answer_round_trip_keeps_indentation():
    text = prompts.format_edit_answer("got 1, want 3: c=3", 3, "return c")
    assert text == "got 1, want 3: c=3\nL3 return c"
    rationale, fix = prompts.parse_edit_output(text, BUGGY)
    assert rationale == "got 1, want 3: c=3"
    assert fix == "def f(a, b):\n    c = a + b\n    return c\n"
    assert prompts.single_line_edit(BUGGY, fix) == (3, "    return c")
    with pytest.raises(ValueError, match="one line"):
        prompts.format_edit_answer("two\nlines", 1, "x")


@pytest.mark.parametrize("text, why", [
    ("got 1, want 3", "no edit line"),
    ("L9 return c", "line out of range"),
    ("L0 return c", "line out of range"),
    ("", "empty"),
])
def test_edit_answer_without_a_usable_line_has_no_fix(text, why):
    assert prompts.parse_edit_output(text, BUGGY)[1] is None, why


def test_last_edit_line_wins_and_earlier_ones_are_rationale():
    rationale, fix = prompts.parse_edit_output("L2 is fine\nL3 return c", BUGGY)
    assert rationale == "L2 is fine" and fix.endswith("    return c\n")


def test_single_line_edit_rejects_other_diffs():
    assert prompts.single_line_edit(BUGGY, BUGGY) is None
    assert prompts.single_line_edit(BUGGY, "def f(a, b):\n    return a\n") is None
    assert prompts.single_line_edit(BUGGY, "def g(a, b):\n    c = a\n    return a\n") is None


def test_template_answers_parse_back_to_the_reference_fix():
    config = domain.DomainConfig(families=domain.FAMILIES)
    tasks = domain.generate(3, "seed", 60, config)
    assert {t.meta["family"] for t in tasks} == set(domain.FAMILIES)
    for task in tasks:
        text = answers.template_answer(task)
        rationale, fix = prompts.parse_edit_output(text, task.buggy_code)
        assert fix == task.reference_fix
        assert rationale.startswith(f"got {task.meta['got']}, want {task.meta['want']}: ")
    pick = next(t for t in tasks if t.meta["family"] == "pick_var")
    assert answers.template_rationale(pick).endswith(f"{pick.meta['fix_from']}={pick.meta['want']}")
    const = next(t for t in tasks if t.meta["family"] == "off_const")
    assert answers.template_rationale(const).endswith(": " + const.meta["fix_from"])
