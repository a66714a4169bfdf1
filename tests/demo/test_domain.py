"""The demo's procedural repair domain: deterministic, one real bug per task, traces that show it."""

import ast
import collections

import pytest

from next_jax.data import prompts
from next_jax.data.records import Sample
from next_jax.demo import domain
from next_jax.execution.checker import CheckConfig, Checker
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.traced_tasks import trace_tasks

CONFIG = domain.DomainConfig(families=domain.FAMILIES)


def test_generation_is_deterministic_and_prefix_stable():
    first = domain.generate(7, "train", 40, CONFIG)
    assert first == domain.generate(7, "train", 40, CONFIG)
    assert domain.generate(7, "train", 10, CONFIG) == first[:10]
    assert domain.generate(8, "train", 40, CONFIG) != first
    assert [t.task_id for t in domain.generate(7, "dev", 3, CONFIG)] == ["dev/0", "dev/1", "dev/2"]


def test_tasks_are_well_formed():
    tasks = domain.generate(1, "train", 200, CONFIG)
    counts = collections.Counter(t.meta["family"] for t in tasks)
    assert set(counts) == set(domain.FAMILIES) and min(counts.values()) > 30
    for task in tasks:
        ast.parse(task.buggy_code)
        assert len(task.tests) == 1 and len(task.eval_tests) == CONFIG.num_eval_tests
        assert task.eval_tests[0] == task.tests[0] and len(set(task.eval_tests)) == len(task.eval_tests)
        line, new_line = prompts.single_line_edit(task.buggy_code, task.reference_fix)
        assert line == task.meta["bug_line"] and new_line.strip() == task.meta["fixed_line"]
        assert task.meta["got"] != task.meta["want"]
        assert task.tests[0].endswith(f"== {task.meta['want']}")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="families"):
        domain.DomainConfig(families=("nope",))
    with pytest.raises(ValueError, match="family_weights"):
        domain.DomainConfig(families=("pick_var",), family_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="min_values"):
        domain.DomainConfig(min_values=5, max_values=4)


def test_sandbox_agrees_buggy_fails_reference_passes_and_trace_shows_the_answer():
    tasks = domain.generate(2, "dev", 24, CONFIG)
    by_id = {t.task_id: t for t in tasks}
    samples = []
    for t in tasks:
        for kind, code in (("ref", t.reference_fix), ("bug", t.buggy_code)):
            samples.append(Sample(task_id=t.task_id, iteration=0, sample_id=f"{t.task_id}/{kind}",
                                  prompt_variant="trace", text="", rationale="", fix=code))
    with Checker(workers=2, options=CheckConfig(tests_field="eval_tests")) as checker:
        verdicts = list(checker.check(by_id, samples))
    for sample, verdict in zip(samples, verdicts):
        assert verdict.status == ("pass" if sample.sample_id.endswith("/ref") else "fail"), sample
    traced = list(trace_tasks(tasks, TraceConfig(comment_prefix=" # ", test_separator="")))
    for task in traced:
        (trace,) = task.traces
        assert trace.outcome == "fail"
        assert f"__return__={task.meta['got']};" in trace.traced_code
        if task.meta["family"] == "pick_var":  # the expected value is on display in the trace
            assert f"{task.meta['fix_from']}={task.meta['want']};" in trace.traced_code


def test_one_digit_values_and_offsets_within_bounds():
    config = domain.DomainConfig(families=("add_offset", "pick_var"), max_value=9, max_offset=5)
    tasks = domain.generate(3, "train", 120, config)
    assert {t.meta["family"] for t in tasks} == {"add_offset", "pick_var"}
    for task in tasks:
        assert 0 <= task.meta["got"] <= 9 and 0 <= task.meta["want"] <= 9
        if task.meta["family"] == "add_offset":
            offset = int(task.meta["fix_from"])
            assert offset == task.meta["want"] - task.meta["got"] and 1 <= abs(offset) <= 5
            assert task.meta["fixed_line"].endswith(f"{'+' if offset > 0 else '-'} {abs(offset)}")
    with pytest.raises(ValueError, match="max_value"):
        domain.DomainConfig(max_arg=9, max_value=5)
    with pytest.raises(ValueError, match="max_offset"):
        domain.DomainConfig(max_offset=0)
