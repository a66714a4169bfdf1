"""pass@k estimator and verdict summaries."""

import itertools
import math

import pytest

from next_jax.data.records import Verdict
from next_jax.evaluation import metrics


def _brute_force(n, c, k):
    """Fraction of k-subsets of n samples (c passing) that contain a pass."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 1, 1), (5, 2, 3), (6, 3, 2), (7, 7, 4), (8, 1, 8)])
def test_estimator_matches_enumeration(n, c, k):
    assert metrics.pass_at_k_one(n, c, k) == pytest.approx(_brute_force(n, c, k))


def test_estimator_is_stable_for_large_n():
    value = metrics.pass_at_k_one(1000, 3, 25)
    assert value == pytest.approx(1 - math.comb(997, 25) / math.comb(1000, 25))


def test_invalid_counts_raise():
    with pytest.raises(ValueError):
        metrics.pass_at_k_one(3, 4, 1)
    with pytest.raises(ValueError):
        metrics.pass_at_k_one(3, 1, 4)


def test_summary_counts_statuses_and_skips_k_above_n():
    verdicts = [Verdict("a", "a/0", "pass", 1, 1), Verdict("a", "a/1", "fail", 0, 1),
                Verdict("b", "b/0", "no_code", 0, 1), Verdict("b", "b/1", "timeout", 0, 1)]
    summary = metrics.summarize_verdicts(verdicts, ks=(1, 2, 5), all_task_ids=["a", "b", "c"])
    assert summary["pass@1"] == pytest.approx(0.25)
    assert summary["pass@2"] == pytest.approx(0.5)
    assert "pass@5" not in summary
    assert summary["statuses"]["timeout"] == 1 and summary["statuses"]["error"] == 0
    assert summary["tasks"] == 3 and summary["tasks_without_samples"] == 1 and summary["tasks_solved"] == 1
