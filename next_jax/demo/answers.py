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

from next_jax.data import prompts
from next_jax.data.records import RepairTask


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
