"""Template answers for the demo's seed set: a one-line rationale and the repaired line.

The rationale restates what the visible test's trace shows and where the fix comes from, in the
compact answer format of :func:`next_jax.data.prompts.format_edit_answer`::

    got 5, want 6: d=6          (pick_var: the variable that holds the expected value)
    L5 return d

    got 1, want 6: ys[1]=6      (pick_index: the list element that holds it)
    L3 return ys[1]

    got 11, want 13: +2         (off_const: what the constant is short by)
    L3 return c + 5

It stands in for the rationales a pretrained model would write when prompted few-shot: the seed
set teaches the format and the reasoning pattern; self-training has to do the rest.
"""

from __future__ import annotations

import re
from typing import Optional

from next_jax.data import prompts
from next_jax.data.records import RepairTask
from next_jax.demo import loops


def template_rationale(task: RepairTask) -> str:
    meta = task.meta
    if meta["family"] in ("off_const", "add_offset"):
        return f"got {meta['got']}, want {meta['want']}: {meta['fix_from']}"
    return f"got {meta['got']}, want {meta['want']}: {meta['fix_from']}={meta['want']}"


def template_answer(task: RepairTask) -> str:
    """The seed answer of a demo task (its rationale and the one-line edit of its reference fix)."""
    edit = prompts.single_line_edit(task.buggy_code, task.reference_fix or "")
    if edit is None:
        raise ValueError(f"task {task.task_id}: the reference fix is not a one-line edit of the buggy code")
    return prompts.format_edit_answer(template_rationale(task), *edit)


# ---------------------------------------------------------------------------------------------
# The shift domain (next_jax.demo.loops): the rationale states the trace fact the fix reads.

_LOOP_RATIONALE = re.compile(r"^got __return__=(\d+), want == (\d+)$")
_SHIFT_FIX = re.compile(r"\s*return \(([a-z]) \+ (\d+)(?: - (\d+))?\) % 10")


def loop_rationale(task: RepairTask) -> str:
    """``got __return__=5, want == 9``: the value the trace shows the function return, then the
    expected one, each quoted the way the prompt writes it (the trace's return mark, the test's
    comparison), so that stating a fact is finding its mark in the prompt and copying what
    follows it."""
    return f"got __return__={task.meta['got']}, want == {task.meta['want']}"


def loop_answer(task: RepairTask) -> str:
    """The seed (and upper-bound) answer: the rationale and the line that shifts the result."""
    meta = task.meta
    return prompts.format_edit_answer(loop_rationale(task), meta["bug_line"],
                                      f"return {loops.shifted(meta['returned'], meta['want'], meta['got'])}")


def fix_shift(fix: Optional[str], task: RepairTask) -> Optional[int]:
    """The shift (mod 10) a parsed fix adds to the returned name on the bug line, for fixes of
    the forms ``return (v + a - b) % 10`` and ``return (v + a) % 10`` that change nothing else
    (None otherwise)."""
    if fix is None:
        return None
    fixed, buggy = fix.rstrip("\n").split("\n"), task.buggy_code.rstrip("\n").split("\n")
    k = task.meta["bug_line"] - 1
    if len(fixed) != len(buggy) or fixed[:k] + fixed[k + 1:] != buggy[:k] + buggy[k + 1:]:
        return None
    match = _SHIFT_FIX.fullmatch(fixed[k])
    if not match or match.group(1) != task.meta["returned"]:
        return None
    return (int(match.group(2)) - int(match.group(3) or 0)) % 10


def rationale_consistent(task: RepairTask, rationale: str, fix: Optional[str]) -> bool:
    """Whether the rationale's facts match the trace and its own fix: the stated returned value is
    the one the trace shows, the stated expected value is the test's, and the fix shifts the
    result by their difference."""
    match = _LOOP_RATIONALE.match(rationale.strip())
    if not match:
        return False
    got, want = int(match.group(1)), int(match.group(2))
    return (got == task.meta["got"] and want == task.meta["want"]
            and fix_shift(fix, task) == (want - got) % 10)
