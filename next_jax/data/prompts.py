"""The NExT prompt and the parsing of a model's answer.

The prompt has the paper's shape (the wording is ours): the natural-language spec, the buggy code,
the test cases and, in the ``trace`` variant, one inline-traced copy of the program per test. The
answer is a rationale (restate the spec, explain the program, compare each assertion's traced value
with the expected one, name the root cause), then "Here is a fixed version" and one fenced python
block. The fix is the LAST fenced python block of the output, so a rationale may quote code.

Prompt building and answer parsing live together because they are two halves of one format: a
change to one without the other silently breaks self-training.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence, Tuple

from next_jax.data import exemplars as exemplar_data
from next_jax.data.records import PROMPT_VARIANTS, RepairTask, TracedTask

FIX_INTRO = "Here is a fixed version of the program:"
ANSWER_HEADER = "# Rationale and fixed code:"

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)```", re.DOTALL)


def _comment_block(text: str) -> str:
    return "\n".join(("# " + line).rstrip() for line in text.strip().splitlines())


def format_problem(task: RepairTask, variant: str = "trace") -> str:
    """The task part of a prompt: spec, buggy code, tests and (trace variant) the traces."""
    if variant not in PROMPT_VARIANTS:
        raise ValueError(f"prompt variant {variant!r} is not one of {PROMPT_VARIANTS}")
    parts = [
        "# Problem specification:",
        _comment_block(task.description),
        "",
        "# Buggy program:",
        task.buggy_code.rstrip(),
        "",
        "# Test cases:",
        *[t.rstrip() for t in task.tests],
    ]
    if variant == "trace":
        if not isinstance(task, TracedTask) or not task.traces:
            raise ValueError(f"task {task.task_id}: the trace variant needs a TracedTask with traces")
        parts += ["", "# Execution traces (one per test case):"]
        for i, trace in enumerate(task.traces, start=1):
            if trace.traced_code.strip():
                parts += [f"# Trace of test {i}:", trace.traced_code.rstrip(), ""]
            else:  # dropped to fit the task's trace budget
                parts += [f"# Trace of test {i}: omitted (too long)", ""]
        parts.pop()
    return "\n".join(parts) + "\n"


def format_answer(rationale: str, fix: str) -> str:
    """The target text: the rationale, the fix intro and one fenced python block."""
    return f"{rationale.strip()}\n\n{FIX_INTRO}\n```python\n{fix.strip()}\n```\n"


def build_prompt(
    task: RepairTask,
    variant: str = "trace",
    exemplars: Sequence[Tuple[RepairTask, str]] = (),
) -> str:
    """The full prompt: optional worked exemplars (task, answer text), then the task.

    The base model is prompted few-shot (NExT uses 3 exemplars); fine-tuned models zero-shot.
    """
    blocks = [format_problem(ex_task, variant) + f"\n{ANSWER_HEADER}\n{answer.strip()}\n" for ex_task, answer in exemplars]
    blocks.append(format_problem(task, variant) + f"\n{ANSWER_HEADER}\n")
    return "\n\n".join(blocks)


def parse_output(text: str) -> Tuple[str, Optional[str]]:
    """Splits a model's answer into (rationale, fix); fix is None when there is no python block.

    The rationale is everything before the last fenced block, without the fix intro line. An
    unterminated final fence (the model ran out of tokens) counts as no fix: a truncated program
    must not be scored as if it were the model's answer.
    """
    matches = list(_FENCE.finditer(text))
    if not matches:
        return text.strip(), None
    last = matches[-1]
    rationale = text[: last.start()].rstrip()
    if rationale.endswith(FIX_INTRO):
        rationale = rationale[: -len(FIX_INTRO)].rstrip()
    return rationale, last.group(1).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# The compact format, for small models that pay for every character (the CPU demo): no spec, no
# headers, and an answer that is a one-line rationale plus the one repaired line, ``L<n> <line>``.
# A traced copy already holds the program and its test, so the trace variant shows only those.

COMPACT_ANSWER_HEADER = "# Fix:"
_EDIT_LINE = re.compile(r"^L(\d+) (.*)$")


def build_compact_prompt(task: RepairTask, variant: str = "trace") -> str:
    """The traced copy of the program per test (``trace``), or the program then its tests
    (``no_trace``), then :data:`COMPACT_ANSWER_HEADER` on its own line."""
    if variant == "trace":
        if not isinstance(task, TracedTask) or not task.traces:
            raise ValueError(f"task {task.task_id}: the trace variant needs a TracedTask with traces")
        body = "\n".join(trace.traced_code.rstrip() for trace in task.traces)
    elif variant == "no_trace":
        body = "\n".join([task.buggy_code.rstrip(), *[t.rstrip() for t in task.tests]])
    else:
        raise ValueError(f"the compact prompt has variants 'trace' and 'no_trace', not {variant!r}")
    return f"{body}\n{COMPACT_ANSWER_HEADER}\n"


def format_edit_answer(rationale: str, line: int, new_line: str) -> str:
    """``{rationale}\\nL{line} {new_line}``; the new line's indentation is the buggy line's."""
    if "\n" in rationale.strip():
        raise ValueError(f"an edit answer's rationale is one line, got {rationale!r}")
    return f"{rationale.strip()}\nL{int(line)} {new_line.strip()}"


def parse_edit_output(text: str, buggy_code: str) -> Tuple[str, Optional[str]]:
    """(rationale, fixed program) from an edit answer; the fix is None when the answer names no
    line of ``buggy_code`` (no ``L<n> ...`` line, or ``n`` out of range).

    The last ``L<n>`` line is the edit, so a rationale may mention line numbers.
    """
    lines = text.strip("\n").split("\n")
    code_lines = buggy_code.rstrip("\n").split("\n")
    for i in range(len(lines) - 1, -1, -1):
        match = _EDIT_LINE.match(lines[i])
        if match:
            number = int(match.group(1))
            rationale = "\n".join(lines[:i]).strip()
            if not 1 <= number <= len(code_lines):
                return rationale, None
            old = code_lines[number - 1]
            code_lines[number - 1] = old[: len(old) - len(old.lstrip())] + match.group(2).strip()
            return rationale, "\n".join(code_lines) + "\n"
    return text.strip(), None


def single_line_edit(buggy_code: str, fixed_code: str) -> Optional[Tuple[int, str]]:
    """(1-based line, new line) when ``fixed_code`` differs from ``buggy_code`` in one line only."""
    old, new = buggy_code.rstrip("\n").split("\n"), fixed_code.rstrip("\n").split("\n")
    if len(old) != len(new):
        return None
    changed = [i for i, (x, y) in enumerate(zip(old, new)) if x != y]
    return (changed[0] + 1, new[changed[0]]) if len(changed) == 1 else None


def few_shot_exemplars():
    """NExT's three worked examples as (TracedTask, answer text) pairs for ``build_prompt``.

    The base model (iteration 0) is prompted 3-shot with them; trained models zero-shot. They
    live in :mod:`next_jax.data.exemplars`, each checked by the tests: its fix passes its tests
    and its answer parses back to the same fix.
    """
    return [(task, format_answer(rationale, fix)) for task, rationale, fix in exemplar_data.EXEMPLARS]
