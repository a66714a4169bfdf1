"""Prompt building and answer parsing."""

import pytest

from next_jax.data import prompts
from next_jax.data.records import RepairTask, Trace, TracedTask

TASK = RepairTask(task_id="t/1", source="unit", description="Return the sum of a and b.\nBoth are ints.",
                  buggy_code="def add(a, b):\n    return a - b\n", entry_point="add",
                  tests=["assert add(1, 2) == 3", "assert add(0, 0) == 0"])
TRACED = TracedTask.from_repair_task(TASK, [
    Trace(test=TASK.tests[0], traced_code="def add(a, b):  # (0) a=1; b=2;\n    return a - b  # (1) __return__=-1\nassert add(1, 2) == 3  # (2) __exception__ = AssertionError()", outcome="fail"),
    Trace(test=TASK.tests[1], traced_code="def add(a, b):  # (0) a=0; b=0;\n    return a - b  # (1) __return__=0\nassert add(0, 0) == 0", outcome="pass"),
])


def test_trace_prompt_has_every_part_in_order():
    prompt = prompts.build_prompt(TRACED, "trace")
    order = ["# Return the sum of a and b.", "# Both are ints.", "def add(a, b):\n    return a - b",
             "assert add(1, 2) == 3\nassert add(0, 0) == 0", "# Trace of test 1:", "(1) __return__=-1",
             "# Trace of test 2:", "(1) __return__=0", prompts.ANSWER_HEADER]
    positions = [prompt.index(piece) for piece in order]
    assert positions == sorted(positions)
    assert prompt.endswith(prompts.ANSWER_HEADER + "\n")


def test_no_trace_prompt_omits_traces_and_trace_variant_needs_them():
    prompt = prompts.build_prompt(TRACED, "no_trace")
    assert "__return__" not in prompt and "Trace of test" not in prompt
    with pytest.raises(ValueError, match="t/1: the trace variant needs"):
        prompts.build_prompt(TASK, "trace")
    with pytest.raises(ValueError, match="not one of"):
        prompts.build_prompt(TASK, "scratchpad")


def test_few_shot_exemplars_come_first_with_their_answers():
    answer = prompts.format_answer("The program subtracts.", "def add(a, b):\n    return a + b")
    prompt = prompts.build_prompt(TASK, "no_trace", exemplars=[(TRACED, answer)])
    assert prompt.count(prompts.ANSWER_HEADER) == 2
    assert prompt.index("The program subtracts.") < prompt.rindex("# Problem specification:")


def test_answer_round_trips_through_parser():
    text = prompts.format_answer("Root cause: `-` should be `+`.", "def add(a, b):\n    return a + b")
    rationale, fix = prompts.parse_output(text)
    assert rationale == "Root cause: `-` should be `+`."
    assert fix == "def add(a, b):\n    return a + b\n"


def test_parser_takes_last_block_and_rejects_unterminated_or_missing():
    text = "Look:\n```python\nbad()\n```\nSo:\n```\ngood()\n```\ntrailing words"
    rationale, fix = prompts.parse_output(text)
    assert fix == "good()\n" and "bad()" in rationale
    assert prompts.parse_output("no code here") == ("no code here", None)
    rationale, fix = prompts.parse_output("Fix:\n```python\ndef f():\n    return")
    assert fix is None


def test_trace_dropped_by_budget_is_marked_not_left_blank():
    dropped = TracedTask.from_repair_task(TASK, [TRACED.traces[0], Trace(test=TASK.tests[1], traced_code="", outcome="pass", truncated=True)])
    prompt = prompts.build_prompt(dropped, "trace")
    assert "# Trace of test 2: omitted (too long)" in prompt
    assert "# Trace of test 1:\ndef add(a, b):" in prompt


def test_exemplars_are_checked_repairs_whose_answers_parse_back():
    from next_jax.data import exemplars
    from next_jax.data.records import Sample
    from next_jax.execution.checker import Checker

    pairs = prompts.few_shot_exemplars()
    assert len(pairs) == 3
    tasks = {t.task_id: t for t in exemplars.repair_tasks()}
    samples = []
    for (task, answer), (_, rationale, fix) in zip(pairs, exemplars.EXEMPLARS):
        assert prompts.parse_output(answer) == (rationale, fix)
        assert answer.index("The problem spec") < answer.index(prompts.FIX_INTRO)
        for trace in task.traces:  # every failing assertion is discussed with its traced return value
            if trace.outcome == "fail":
                returned = trace.traced_code.split("__return__=")[-1].split("\n")[0].rstrip(";")
                assert f"the return value is {returned} while the expected output is" in rationale
        for who, code in (("fix", fix), ("buggy", task.buggy_code)):
            samples.append(Sample(task_id=task.task_id, iteration=0, sample_id=f"{task.task_id}/{who}",
                                  prompt_variant="trace", text="", rationale="", fix=code))
    with Checker(workers=1) as checker:
        statuses = {v.sample_id: v.status for v in checker.check(tasks, samples)}
    assert {s: st for s, st in statuses.items() if s.endswith("/fix")} == {
        f"{t}/fix": "pass" for t in tasks}
    assert all(st == "fail" for s, st in statuses.items() if s.endswith("/buggy"))
    prompt = prompts.build_prompt(TRACED, "trace", exemplars=pairs)
    assert prompt.count(prompts.ANSWER_HEADER) == 4 and prompt.count(prompts.FIX_INTRO) == 3


def test_exemplar_traces_are_the_tracers_output():
    from next_jax.data import exemplars
    from next_jax.tracing.traced_tasks import trace_tasks

    stored = [task for task, _, _ in exemplars.EXEMPLARS]
    # The exemplars are our own programs, so they may be traced in-process.
    fresh = list(trace_tasks([t.repair_task() for t in stored], sandbox=False))
    assert [t.traces for t in fresh] == [t.traces for t in stored]
