"""pass@k and verdict summaries.

pass@k uses the unbiased estimator of Chen et al. (2021): with n samples of which c pass, the
chance that at least one of k drawn without replacement passes is 1 - C(n-c, k) / C(n, k),
computed as a product so large n does not overflow. A task's k larger than its n is reported
as missing rather than extrapolated.
"""

from __future__ import annotations

import collections
from typing import Dict, Iterable, Mapping, Sequence

from next_jax.data.records import VERDICT_STATUSES, Verdict


def pass_at_k_one(n: int, c: int, k: int) -> float:
    """pass@k of one task with n samples and c passing ones (k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    fail_all = 1.0
    for i in range(n - c + 1, n + 1):
        fail_all *= 1.0 - k / i
    return 1.0 - fail_all


def pass_at_k(counts: Mapping[str, Sequence[int]], ks: Iterable[int]) -> Dict[str, float]:
    """Mean pass@k over tasks; ``counts`` maps task_id -> (n samples, c passing)."""
    out = {}
    for k in ks:
        values = [pass_at_k_one(n, c, k) for n, c in counts.values() if n >= k]
        if values:
            out[f"pass@{k}"] = sum(values) / len(values)
    return out


def summarize_verdicts(verdicts: Iterable[Verdict], ks: Iterable[int] = (1, 5, 10, 25),
                       all_task_ids: Iterable[str] = ()) -> dict:
    """pass@k over tasks plus status counts; tasks in ``all_task_ids`` with no verdict count as 0/0."""
    per_task = collections.defaultdict(lambda: [0, 0])
    statuses = collections.Counter({s: 0 for s in VERDICT_STATUSES})
    for v in verdicts:
        per_task[v.task_id][0] += 1
        per_task[v.task_id][1] += int(v.passed)
        statuses[v.status] += 1
    missing = sorted(set(all_task_ids) - per_task.keys())
    summary = {
        "tasks": len(per_task) + len(missing),
        "tasks_without_samples": len(missing),
        "samples": sum(n for n, _ in per_task.values()),
        "statuses": dict(statuses),
        "tasks_solved": sum(1 for _, c in per_task.values() if c > 0),
    }
    summary.update(pass_at_k({t: tuple(nc) for t, nc in per_task.items()}, ks))
    return summary
