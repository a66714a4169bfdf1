"""The data steps of Algorithm 1: choosing D_H, and filtering samples into the training set B(i).

Pure functions over records (no model, no sandbox), so their rules are tested directly:

- ``pass_rates`` / ``hard_problems``: a task is hard when its base pass@1, estimated as c / n from
  n samples, is below the threshold m (line 1 of Algorithm 1).
- ``accepted_pairs``: the (rationale, fix) samples whose fix passed all the task's tests (line 6).
- ``build_training_set``: B(i) from this iteration's accepted pairs (plus, as options, earlier
  iterations' pairs and the seed set), deduplicated and capped per problem, in a stable order.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from next_jax.data.records import RepairTask, Sample, Verdict
from next_jax.selftrain.settings import BuildConfig


def pass_rates(verdicts: Iterable[Verdict]) -> Dict[str, Tuple[int, int]]:
    """task_id -> (samples, passing samples)."""
    counts: Dict[str, List[int]] = collections.defaultdict(lambda: [0, 0])
    for verdict in verdicts:
        counts[verdict.task_id][0] += 1
        counts[verdict.task_id][1] += int(verdict.passed)
    return {task_id: (n, c) for task_id, (n, c) in counts.items()}


def hard_problems(task_ids: Sequence[str], rates: Mapping[str, Tuple[int, int]], threshold: float) -> List[str]:
    """The task ids (in ``task_ids`` order) whose estimated pass@1 is below ``threshold``.

    A task without samples cannot be estimated; it counts as hard (pass@1 unknown, assume 0).
    """
    out = []
    for task_id in task_ids:
        n, c = rates.get(task_id, (0, 0))
        if n == 0 or c / n < threshold:
            out.append(task_id)
    return out


def accepted_pairs(samples: Sequence[Sample], verdicts: Sequence[Verdict]) -> List[Sample]:
    """The samples whose fix passed (verdicts in the samples' order, one each)."""
    if len(samples) != len(verdicts):
        raise ValueError(f"{len(samples)} samples but {len(verdicts)} verdicts")
    out = []
    for sample, verdict in zip(samples, verdicts):
        if sample.sample_id != verdict.sample_id:
            raise ValueError(f"verdict {verdict.sample_id!r} does not belong to sample {sample.sample_id!r}")
        if verdict.passed and sample.fix is not None:
            out.append(sample)
    return out


def _normalized_fix(fix: Optional[str]) -> str:
    if fix is None:
        return ""
    try:
        return ast.dump(ast.parse(fix))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "\n".join(line.rstrip() for line in fix.strip().splitlines())


def _dedup_key(sample: Sample, mode: str) -> Optional[str]:
    if mode == "text":
        return sample.text.strip()
    if mode == "fix":
        return _normalized_fix(sample.fix)
    return None


def seed_samples(seed: Sequence[Tuple[RepairTask, str]], *, iteration: int, variant: str) -> List[Sample]:
    """The seed set's (task, answer) pairs as Samples, so B(i) holds one record type."""
    return [Sample(task_id=task.task_id, iteration=iteration, sample_id=f"{task.task_id}/seed/{j}",
                   prompt_variant=variant, text=answer, rationale="", fix=None, model="seed")
            for j, (task, answer) in enumerate(seed)]


@dataclasses.dataclass
class TrainingSet:
    """B(i) and the figures the report shows about it."""

    pairs: List[Sample]
    covered: List[str]  # hard problems with at least one accepted pair in this iteration
    accepted_per_problem: Dict[str, int]  # this iteration's accepted pairs per covered problem
    from_seed: int = 0
    from_earlier: int = 0

    def stats(self, num_hard: int) -> dict:
        per = sorted(self.accepted_per_problem.values())
        return {
            "size": len(self.pairs),
            "problems_covered": len(self.covered),
            "coverage": len(self.covered) / num_hard if num_hard else 0.0,
            "accepted": sum(per),
            "accepted_per_problem_mean": sum(per) / len(per) if per else 0.0,
            "accepted_per_problem_max": per[-1] if per else 0,
            "accepted_per_problem_median": per[len(per) // 2] if per else 0,
            "from_seed": self.from_seed,
            "from_earlier_iterations": self.from_earlier,
        }


def build_training_set(
    accepted: Sequence[Sample],
    settings: BuildConfig,
    *,
    earlier: Sequence[Sample] = (),
    seed: Sequence[Sample] = (),
) -> TrainingSet:
    """B(i): earlier pairs (when accumulating), this iteration's, then the seed pairs.

    Deduplication and the per-problem cap apply to the model's pairs (earlier ones first, so an
    accumulated B keeps what it had); the seed pairs are added as given.
    """
    per_problem: Dict[str, int] = collections.Counter()
    seen: Dict[str, set] = collections.defaultdict(set)
    pairs: List[Sample] = []

    def admit(sample: Sample) -> bool:
        key = _dedup_key(sample, settings.dedup)
        if key is not None and key in seen[sample.task_id]:
            return False
        if settings.max_per_problem is not None and per_problem[sample.task_id] >= settings.max_per_problem:
            return False
        if key is not None:
            seen[sample.task_id].add(key)
        per_problem[sample.task_id] += 1
        pairs.append(sample)
        return True

    from_earlier = sum(admit(s) for s in (earlier if settings.accumulate else ()))
    this_iteration: Dict[str, int] = collections.Counter()
    for sample in accepted:
        this_iteration[sample.task_id] += 1
        admit(sample)
    seeds = list(seed) if settings.include_seed else []
    pairs.extend(seeds)
    covered = [task_id for task_id in this_iteration]
    return TrainingSet(pairs=pairs, covered=covered, accepted_per_problem=dict(this_iteration),
                       from_seed=len(seeds), from_earlier=from_earlier)
