"""The data rules of Algorithm 1: hard problems, accepted pairs, B(i) options, steps from |B(i)|."""

import pytest

from next_jax.data.records import RepairTask, Sample, Verdict
from next_jax.selftrain import building
from next_jax.selftrain.settings import BuildConfig, FinetuneConfig, SelectionConfig


def _sample(task, j, text=None, fix="def f():\n    return 1\n"):
    return Sample(task_id=task, iteration=0, sample_id=f"{task}/0/trace/{j}", prompt_variant="trace",
                  text=text or f"answer {j}", rationale="r", fix=fix)


def _verdict(sample, status):
    return Verdict(sample.task_id, sample.sample_id, status, int(status == "pass"), 1)


def test_hard_problems_use_pass_at_1_below_the_threshold():
    verdicts = [Verdict("a", f"a/{j}", "pass" if j < 3 else "fail", 0, 1) for j in range(32)]  # 3/32 < 0.1
    verdicts += [Verdict("b", f"b/{j}", "pass" if j < 4 else "fail", 0, 1) for j in range(32)]  # 4/32 >= 0.1
    rates = building.pass_rates(verdicts)
    assert rates == {"a": (32, 3), "b": (32, 4)}
    assert building.hard_problems(["b", "a", "c"], rates, 0.1) == ["a", "c"]  # c: no samples, counts as hard
    with pytest.raises(ValueError):
        SelectionConfig(threshold=0.0)


def test_accepted_pairs_need_a_pass_and_matching_ids():
    samples = [_sample("a", 0), _sample("a", 1), _sample("a", 2, fix=None)]
    verdicts = [_verdict(samples[0], "pass"), _verdict(samples[1], "fail"), _verdict(samples[2], "pass")]
    assert building.accepted_pairs(samples, verdicts) == [samples[0]]
    with pytest.raises(ValueError, match="does not belong"):
        building.accepted_pairs(samples[:2], verdicts[1:])


def test_paper_default_keeps_every_accepted_pair_and_reports_coverage():
    accepted = [_sample("a", 0), _sample("a", 1), _sample("b", 0)]
    training = building.build_training_set(accepted, BuildConfig())
    assert training.pairs == accepted
    stats = training.stats(num_hard=4)
    assert stats["size"] == 3 and stats["problems_covered"] == 2 and stats["coverage"] == 0.5
    assert stats["accepted_per_problem_mean"] == 1.5 and stats["accepted_per_problem_max"] == 2


def test_dedup_by_text_and_by_fix_and_the_cap():
    same_fix = "def f():\n    return 1\n"
    accepted = [_sample("a", 0, text="x", fix=same_fix), _sample("a", 1, text="x", fix=same_fix),
                _sample("a", 2, text="y", fix="def f():\n    return  1\n"), _sample("a", 3, text="z", fix="def f():\n    return 2\n")]
    assert len(building.build_training_set(accepted, BuildConfig(dedup="text")).pairs) == 3
    by_fix = building.build_training_set(accepted, BuildConfig(dedup="fix")).pairs
    assert [s.sample_id for s in by_fix] == ["a/0/trace/0", "a/0/trace/3"]  # same AST counts once
    capped = building.build_training_set(accepted, BuildConfig(max_per_problem=2))
    assert [s.sample_id for s in capped.pairs] == ["a/0/trace/0", "a/0/trace/1"]
    assert capped.accepted_per_problem == {"a": 4}  # the report counts what was accepted
    with pytest.raises(ValueError):
        BuildConfig(dedup="semantic")
    with pytest.raises(ValueError, match="tests_field"):
        BuildConfig(tests_field="hidden_tests")


def test_accumulate_and_seed_are_options():
    earlier, now = [_sample("a", 0, text="old")], [_sample("b", 0)]
    task = RepairTask(task_id="s", source="x", description="d", buggy_code="b", entry_point="f", tests=["assert 1"])
    seed = building.seed_samples([(task, "the answer")], iteration=1, variant="trace")
    assert seed[0].text == "the answer" and seed[0].model == "seed"
    reset = building.build_training_set(now, BuildConfig(), earlier=earlier, seed=seed)
    assert reset.pairs == now  # the paper: B(i) only, no seed
    both = building.build_training_set(now, BuildConfig(accumulate=True, include_seed=True), earlier=earlier, seed=seed)
    assert both.pairs == earlier + now + seed and both.from_earlier == 1 and both.from_seed == 1
    assert both.covered == ["b"]


def test_steps_follow_the_size_of_b():
    settings = FinetuneConfig(epochs=2.0, batch_size=8, min_steps=5, max_steps=40)
    assert settings.steps_for(0) == 5 and settings.steps_for(100) == 25 and settings.steps_for(1000) == 40
    assert FinetuneConfig(num_steps=7).steps_for(1000) == 7
    with pytest.raises(ValueError):
        FinetuneConfig(max_steps=1, min_steps=2)
