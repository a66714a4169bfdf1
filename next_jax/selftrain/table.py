"""Algorithm 1 as one table of stages, and the driver that runs an iteration of it.

A stage is a function of the outputs of the stages it names (``upstream``; ``"model"`` is the
model of the current iteration: the starting model, then each fine-tune's) that returns its own
outputs. The table fixes the stages, their order and what each reads; a caller supplies an
implementation per stage. ``run_next`` implements them as resumable jobs with manifests on files
under MODEL_DIR (the trainer and sampler it would run on a pod); the CPU demo implements them in
memory on one warm in-process model, and reuses its fine-tune and eval stages on other data for
its bootstrap, control and upper-bound arms. Either way an iteration is :func:`run_iteration`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, MutableMapping, Optional, Tuple

# (name, upstream): select D_H once, evaluate the iteration's model (dev, then test), sample
# answers to the hard problems, check them, build B(i) from the passing ones, fine-tune on it.
STAGE_GRAPH: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("select", ("model",)),
    ("eval", ("model",)),
    ("test", ("model",)),
    ("sample", ("select", "model")),
    ("check", ("select", "sample")),
    ("build", ("select", "sample", "check")),
    ("finetune", ("build", "model")),
)
STAGE_NAMES = tuple(name for name, _ in STAGE_GRAPH)
UPSTREAM: Dict[str, Tuple[str, ...]] = dict(STAGE_GRAPH)


@dataclasses.dataclass(frozen=True)
class StageImpl:
    """One stage as a caller implements it.

    run: (context, runner, iteration, {upstream name: its outputs}) -> outputs.
    when: (context, iteration) -> whether the stage runs in this iteration.
    report: the part of the outputs that goes into the iteration's row.
    """

    run: Callable[[Any, Any, int, Mapping[str, Any]], Any]
    when: Callable[[Any, int], bool] = lambda ctx, i: True
    report: Optional[Callable[[Any], dict]] = None


def check_impls(impls: Mapping[str, StageImpl]) -> None:
    unknown = sorted(set(impls) - set(STAGE_NAMES))
    if unknown:
        raise ValueError(f"stage implementations {unknown} are not stages of the table {STAGE_NAMES}")


def run_iteration(impls: Mapping[str, StageImpl], ctx: Any, runner: Any, i: int,
                  outputs: MutableMapping[str, Any]) -> dict:
    """Runs the table's stages that ``impls`` implements and whose ``when`` holds, in table order,
    each on its upstream outputs; updates ``outputs`` in place (``"model"`` becomes the
    fine-tune's model when the iteration fine-tuned) and returns the iteration's row of reports.

    A stage whose upstream has no output yet is a wiring error, named here rather than as a
    KeyError inside the stage.
    """
    check_impls(impls)
    row: Dict[str, Any] = {}
    for name in STAGE_NAMES:
        impl = impls.get(name)
        if impl is None or not impl.when(ctx, i):
            continue
        missing = [up for up in UPSTREAM[name] if up not in outputs]
        if missing:
            raise ValueError(f"iteration {i}: stage {name!r} needs the outputs of {missing}, which no earlier "
                             "stage produced")
        outputs[name] = impl.run(ctx, runner, i, {up: outputs[up] for up in UPSTREAM[name]})
        if impl.report is not None:
            row.update(impl.report(outputs[name]))
        if name == "finetune" and isinstance(outputs[name], Mapping) and "model" in outputs[name]:
            outputs["model"] = outputs[name]["model"]
    return row
