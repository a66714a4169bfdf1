"""The paper's own traces (tests/tracing/golden, see PROVENANCE.md there): Figures 2 and 1, byte for byte.

Only whitespace inside the trace comments may differ from the figures (they disagree with each
other on it); steps, names, values and the abbreviation must match exactly.
"""

import os
import re

import pytest

from next_jax.tracing.config import TraceConfig
from next_jax.tracing.record_run import record
from next_jax.tracing.render import render_trace

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
FIG2_PROGRAM = os.path.join(GOLDEN, "fig2_separate_odd_and_even.src")
FIG2_EXPECTED = os.path.join(GOLDEN, "fig2_separate_odd_and_even.expected")

FIG1_PROGRAM = """def extract_values(string):
  str_list = string.replace('"','').split(",")
  return str_list
"""
FIG1_TEST = """assert extract_values('"Python", "PHP", "Java"')==['Python', 'PHP', 'Java']"""
FIG1_EXPECTED = """def extract_values(string): # (0) string='"Python", "PHP", "Java"';
  str_list = string.replace('"','').split(",") # (1) str_list=['Python', ' PHP', ' Java'];
  return str_list # (2) __return__=['Python', ' PHP', ' Java'];
assert extract_values('"Python", "PHP", "Java"')==['Python', 'PHP', 'Java'] # (3) __exception__ = AssertionError()"""


def _normalize_comments(text: str) -> str:
    """Collapses whitespace inside trace comments (from the `# (` that starts one)."""
    out = []
    for line in text.strip("\n").split("\n"):
        match = re.search(r"\s*#\s*\(\d+\)", line)
        if match:
            code, comment = line[: match.start()], line[match.start():]
            line = code + " " + " ".join(comment.split())
        out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def fig2():
    with open(FIG2_PROGRAM) as f:
        program = f.read()
    with open(FIG2_EXPECTED) as f:
        expected = f.read()
    return program, expected


def test_figure2_byte_for_byte(fig2):
    program, expected = fig2
    test = "separate_odd_and_even([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])"
    text = render_trace(program, test, record(program, test))
    program_part, test_part = text.split("\n\n")
    assert program_part == expected.rstrip("\n")  # exact, whitespace included
    assert test_part == test  # the call changes no variable: no comment


def test_figure2_with_the_figure_test_line(fig2):
    program, expected = fig2
    test = "separate_odd_and_even([1,2,3,4,5,6,7,8,9,10]) == [1,3,5,7,9], [2,4,6,8,10]"
    data = record(program, test)
    assert data["outcome"] == "pass" and data["steps"] == 24
    text = render_trace(program, test, data)
    assert text.split("\n\n")[0] == expected.rstrip("\n")
    assert text.endswith("\n\n" + test)


def test_figure1_byte_for_byte_up_to_comment_whitespace():
    data = record(FIG1_PROGRAM, FIG1_TEST)
    assert data["outcome"] == "fail"
    exact = render_trace(FIG1_PROGRAM, FIG1_TEST, data, TraceConfig(comment_prefix=" # ", test_separator=""))
    assert exact == FIG1_EXPECTED
    default = render_trace(FIG1_PROGRAM, FIG1_TEST, data)
    assert _normalize_comments(default.replace("\n\n", "\n")) == _normalize_comments(FIG1_EXPECTED)


def test_normalizer_only_touches_comment_whitespace():
    assert _normalize_comments("x = 1  #  (0)  x=1;") == "x = 1 # (0) x=1;"
    assert _normalize_comments("x = 1  #  (0)  x=1;") != _normalize_comments("x = 1 # (0) x=2;")
