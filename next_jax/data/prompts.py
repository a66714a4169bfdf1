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
