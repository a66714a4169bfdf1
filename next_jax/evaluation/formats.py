"""Answer formats: how a task becomes a prompt and how a model's answer becomes a fix.

The two halves of a format travel together because self-training feeds the model's own answers
back as training targets: the sampler's prompt, the parser that extracts the fix the executor
checks, and the proxy prompt that hands a rationale to a second model must all agree. Formats are
chosen by name (``--gin.loop.NextConfig.answer_format="'line_edit'"``) or passed as an :class:`AnswerFormat` object.

- ``fenced`` (default, the paper's shape): the full prompt of ``data.prompts.build_prompt``; the
  answer is a rationale then the fix as the last fenced python block.
- ``line_edit``: the compact prompt of ``data.prompts.build_compact_prompt`` for small models
  that pay for every character; the answer is a one-line rationale then ``L<n> <new line>``.

The parser gets the task as well as the text, since an edit answer only means something against
the buggy program it edits.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

from next_jax.data import prompts
from next_jax.data.records import RepairTask

Exemplars = Sequence[Tuple[RepairTask, str]]


@dataclasses.dataclass(frozen=True)
class AnswerFormat:
    """A prompt builder and its answer parser, plus the proxy evaluation's prompt and parser.

    Attributes:
      name: the registry name (recorded in stage manifests).
      prompt: (task, variant, exemplars) -> prompt text; variant is 'trace' or 'no_trace'.
      parse: (answer text, task) -> (rationale, fix program or None).
      proxy_prompt: (task, rationale) -> prompt for the proxy model, which writes only the fix.
      proxy_parse: (proxy answer text, task) -> fix program or None.
      default_exemplars: () -> [(task, answer)], the few-shot exemplars a base model is prompted
        with in this format (None: the format has none; a run can still pass its own).
    """

    name: str
    prompt: Callable[[RepairTask, str, Exemplars], str]
    parse: Callable[[str, RepairTask], Tuple[str, Optional[str]]]
    proxy_prompt: Callable[[RepairTask, str], str]
    proxy_parse: Callable[[str, RepairTask], Optional[str]]
    default_exemplars: Optional[Callable[[], list]] = None


# --------------------------------------------------------------------------------------------
# fenced: the paper's prompt and answer.


def _fenced_proxy_prompt(task: RepairTask, rationale: str) -> str:
    # The rationale is written as the start of the answer, so the proxy model (prompted or
    # NExT-trained) only has to continue with the fixed program.
    return (prompts.build_prompt(task, "no_trace") + rationale.strip() + f"\n\n{prompts.FIX_INTRO}\n```python\n")


def _fenced_proxy_parse(text: str, task: RepairTask) -> Optional[str]:
    del task
    code = text.split("```", 1)[0]
    return code.rstrip("\n") + "\n" if code.strip() else None


FENCED = AnswerFormat(
    name="fenced",
    prompt=lambda task, variant, exemplars: prompts.build_prompt(task, variant, exemplars),
    parse=lambda text, task: prompts.parse_output(text),
    proxy_prompt=_fenced_proxy_prompt,
    proxy_parse=_fenced_proxy_parse,
    default_exemplars=prompts.few_shot_exemplars,
)


# --------------------------------------------------------------------------------------------
# line_edit: the compact prompt and the one-line edit answer.


def _edit_prompt(task: RepairTask, variant: str, exemplars: Exemplars) -> str:
    shots = "".join(prompts.build_compact_prompt(t, variant) + answer.strip() + "\n\n" for t, answer in exemplars)
    return shots + prompts.build_compact_prompt(task, variant)


def _edit_proxy_prompt(task: RepairTask, rationale: str) -> str:
    return prompts.build_compact_prompt(task, "no_trace") + rationale.strip() + "\n"


def _edit_proxy_parse(text: str, task: RepairTask) -> Optional[str]:
    return prompts.parse_edit_output(text, task.buggy_code)[1]


LINE_EDIT = AnswerFormat(
    name="line_edit",
    prompt=_edit_prompt,
    parse=lambda text, task: prompts.parse_edit_output(text, task.buggy_code),
    proxy_prompt=_edit_proxy_prompt,
    proxy_parse=_edit_proxy_parse,
)

FORMATS: Dict[str, AnswerFormat] = {f.name: f for f in (FENCED, LINE_EDIT)}


def register_format(answer_format: AnswerFormat) -> AnswerFormat:
    """Adds (or replaces) a format under its name, so gin files can select it by name."""
    FORMATS[answer_format.name] = answer_format
    return answer_format


def get_format(answer_format: Union[str, AnswerFormat]) -> AnswerFormat:
    if isinstance(answer_format, AnswerFormat):
        return answer_format
    if answer_format not in FORMATS:
        raise ValueError(f"answer_format {answer_format!r} is not one of {sorted(FORMATS)}")
    return FORMATS[answer_format]
