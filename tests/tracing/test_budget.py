"""Per-task budget: later tests dropped first, then values shortened, always marked."""

import pytest

from next_jax.tracing.budget import fit_traces
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.record_run import record
from next_jax.tracing.render import render_trace

PROGRAM = "def f(n):\n    xs = list(range(n))\n    s = 0\n    for x in xs:\n        s += x\n    return s\n"
TESTS = ["assert f(50) == 1225", "assert f(3) == 3", "assert f(4) == 7"]


@pytest.fixture(scope="module")
def datas():
    return [record(PROGRAM, t) for t in TESTS]


def test_no_budget_renders_everything(datas):
    fitted = fit_traces(PROGRAM, TESTS, datas)
    assert [t for t, _ in fitted] == [render_trace(PROGRAM, t, d) for t, d in zip(TESTS, datas)]
    assert not any(flag for _, flag in fitted)


def test_later_tests_are_dropped_first(datas):
    full = [len(render_trace(PROGRAM, t, d)) for t, d in zip(TESTS, datas)]
    fitted = fit_traces(PROGRAM, TESTS, datas, budget=full[0] + full[1])
    assert [bool(t) for t, _ in fitted] == [True, True, False]
    assert [flag for _, flag in fitted] == [False, False, True]
    fitted = fit_traces(PROGRAM, TESTS, datas, budget=full[0])
    assert [bool(t) for t, _ in fitted] == [True, False, False]
    assert fitted[0][1] is False


def test_values_are_shortened_when_one_test_is_still_too_long(datas):
    full = len(render_trace(PROGRAM, TESTS[0], datas[0]))
    fitted = fit_traces(PROGRAM, TESTS, datas, budget=full - 60)
    text, truncated = fitted[0]
    assert truncated and len(text) <= full - 60
    assert "xs=[0, 1, 2" in text and "...]" in text
    assert [t for t, _ in fitted[1:]] == ["", ""]


def test_token_counter_is_used_when_given(datas):
    def words(text):
        return len(text.split())

    sizes = [words(render_trace(PROGRAM, t, d)) for t, d in zip(TESTS, datas)]
    fitted = fit_traces(PROGRAM, TESTS, datas, budget=sum(sizes[:2]), count_tokens=words)
    assert [bool(t) for t, _ in fitted] == [True, True, False]


def test_impossible_budget_returns_the_shortest_marked(datas):
    fitted = fit_traces(PROGRAM, TESTS, datas, budget=10)
    assert fitted[0][1] and fitted[0][0]
    assert "...;" in fitted[0][0] or "..." in fitted[0][0]


def test_bad_arguments():
    with pytest.raises(ValueError):
        fit_traces(PROGRAM, TESTS, [], budget=10)
    with pytest.raises(ValueError):
        fit_traces(PROGRAM, TESTS[:1], [record(PROGRAM, TESTS[0])], budget=0)


def test_config_validation_and_round_trip():
    config = TraceConfig(max_value_chars=20, head_visits=2)
    assert TraceConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TraceConfig fields"):
        TraceConfig.from_dict({"nope": 1})
    for bad in ({"max_value_chars": 2}, {"max_events": 0}, {"head_visits": -1},
                {"min_hidden_visits": 0}, {"comment_prefix": "  "}):
        with pytest.raises(ValueError):
            TraceConfig(**bad)
