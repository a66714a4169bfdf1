"""The CPU demo: its shift domain, answers, counterfactual edit, baselines, statistics, and
one tiny end-to-end run through its gin file (the JSON line, report.md, demo.png)."""

import json
import os
import re

import gin
import numpy as np
import pytest

from next_jax import main as main_lib
from next_jax.data import prompts
from next_jax.data.records import Sample
from next_jax.demo import answers, baselines, loops
from next_jax.demo import run as demo
from next_jax.execution.checker import CheckConfig, Checker
from next_jax.tracing.traced_tasks import trace_tasks

CONFIG = loops.LoopConfig()


def _splits(seed=3):
    return loops.make_splits(seed, {"seed": 10, "train": 60, "val": 20, "test": 30}, CONFIG)


def test_splits_are_deterministic_and_disjoint_by_program():
    first, again = _splits(), _splits()
    assert first == again
    keys = [loops.normalized(t.buggy_code) for tasks in first.values() for t in tasks]
    assert len(keys) == len(set(keys)) == 120
    # Renaming the accumulators gives the same normalised program.
    code = first["test"][0].buggy_code
    names = first["test"][0].meta["names"]
    fresh = [c for c in "abcdeghjkmnpqrstuvwyz" if c not in names]
    renamed = re.sub(r"\b[a-z]\b", lambda m: dict(zip(names, fresh)).get(m.group(0), m.group(0)), code)
    assert renamed != code and loops.normalized(renamed) == loops.normalized(code)
    assert loops.normalized(code).count("v0") >= 3


def test_a_balanced_split_shows_every_returned_value_shift_and_expected_value_about_equally():
    from collections import Counter

    plain = loops.make_splits(4, {"seed": 40, "train": 30}, CONFIG)
    balanced = loops.make_splits(4, {"seed": 40, "train": 30}, CONFIG, balanced=("seed",))
    assert balanced["seed"] != plain["seed"]
    for i, task in enumerate(balanced["seed"]):
        assert (task.meta["got"], task.meta["shift"]) == loops.balanced_target(int(task.task_id.split("/")[1]))
    for key, values in (("got", range(10)), ("shift", range(1, 10)), ("want", range(10))):
        counts = Counter(t.meta[key] for t in balanced["seed"])
        assert set(counts) == set(values)
        assert max(counts.values()) - min(counts.values()) <= 3, (key, counts)
    # 90 consecutive targets hold every (returned value, shift) pair once.
    assert len({loops.balanced_target(i) for i in range(90)}) == 90
    # The other splits are drawn as before and stay disjoint from the balanced one.
    keys = [loops.normalized(t.buggy_code) for tasks in balanced.values() for t in tasks]
    assert len(keys) == len(set(keys))


def test_the_fix_needs_the_returned_value_that_only_the_trace_shows():
    tasks = [t for s in _splits().values() for t in s]
    assert {t.meta["shift"] for t in tasks} == set(range(1, 10))  # every shift occurs
    for task in tasks:
        meta = task.meta
        assert (meta["got"] + meta["shift"]) % 10 == meta["want"] != meta["got"]
        assert 0 not in meta["xs"] and task.tests[0] in task.eval_tests
        assert len(task.eval_tests) == CONFIG.num_eval_tests
        # The bug is the missing shift: the buggy code returns the last accumulator as it is.
        assert task.buggy_code.rstrip("\n").split("\n")[-1] == f"  return {meta['names'][-1]}"
    traced = list(trace_tasks(tasks[:5], demo.DEMO_TRACE_CONFIG, sandbox=False))
    for task in traced:
        text = task.traces[0].traced_code
        assert text.count(f"__return__={task.meta['got']};") == 1
        # A loop line shows one value: its last visit (the abbreviation with no head).
        loop_lines = [line for line in text.split("\n") if line.startswith("    ")]
        assert loop_lines and all(len(re.findall(r"\(\d+\) [a-z]=\d;", line)) == 1 for line in loop_lines)


def test_sandbox_agrees_reference_passes_buggy_fails_and_template_answer_parses_to_the_fix():
    tasks = _splits()["test"][:6]
    samples = []
    for task in tasks:
        text = answers.loop_answer(task)
        rationale, fix = prompts.parse_edit_output(text, task.buggy_code)
        assert fix == task.reference_fix
        assert answers.rationale_consistent(task, rationale, fix)
        assert answers.fix_shift(fix, task) == task.meta["shift"]
        # A rationale that misstates the returned value is not consistent, even with the right fix.
        wrong = text.replace(f"got __return__={task.meta['got']},", f"got __return__={(task.meta['got'] + 1) % 10},", 1)
        assert not answers.rationale_consistent(task, *prompts.parse_edit_output(wrong, task.buggy_code))
        # The shift written as one number is the same fix.
        plain = fix.replace(f"+ {task.meta['want']} - {task.meta['got']})", f"+ {task.meta['shift']})")
        assert answers.fix_shift(plain, task) == task.meta["shift"]
        samples += [Sample(task_id=task.task_id, iteration=0, sample_id=f"{task.task_id}/{kind}", prompt_variant="trace",
                           text="", rationale="", fix=code)
                    for kind, code in (("ref", fix), ("bug", task.buggy_code), ("plain", plain))]
    with Checker(workers=1, options=CheckConfig(tests_field="eval_tests")) as checker:
        verdicts = list(checker.check({t.task_id: t for t in tasks}, samples))
    assert [v.passed for v in verdicts] == [True, False, True] * len(tasks)


def test_counterfactual_edits_the_returned_value_everywhere_the_trace_shows_it():
    traced = list(trace_tasks(_splits()["test"][:8], demo.DEMO_TRACE_CONFIG, sandbox=False))
    for task in traced:
        edited, target = demo.counterfactual(task)
        meta = task.meta
        text = edited.traces[0].traced_code
        shown = int(re.search(r"__return__=(\d);", text).group(1))
        assert shown not in (meta["got"], meta["want"])
        assert target == (meta["want"] - shown) % 10 != meta["shift"]
        # The returned accumulator's last value the trace shows is the edited one too.
        before_return = text.split("__return__")[0]
        assert re.findall(rf"\b{meta['returned']}=(\d);", before_return)[-1] == str(shown)
        # Nothing else changed.
        original = task.traces[0].traced_code
        assert len(text) == len(original) and sum(a != b for a, b in zip(text, original)) == 2
        assert edited.buggy_code == task.buggy_code and edited.tests == task.tests


def test_guessing_rules_score_near_chance_on_fresh_tasks():
    fitted = baselines.fit(11, 2000, CONFIG)
    fresh = list(loops.make_splits(12, {"test": 1500}, CONFIG)["test"])
    scores = {name: float(np.mean(v)) for name, v in baselines.evaluate(fresh, fitted).items()}
    chance = 1.0 / 9.0
    assert scores["chance"] == pytest.approx(chance)
    for name, score in scores.items():
        assert abs(score - chance) < 0.04, (name, score)


def test_paired_standard_error_adds_seed_and_task_variance():
    a = [[1, 1, 0, 0], [1, 1, 1, 0]]
    b = [[0, 1, 0, 0], [0, 1, 1, 0]]
    out = demo.paired(a, b)
    assert out["mean"] == 0.25 and out["per_seed"] == [0.25, 0.25]
    # No seed variance; the task variance of each seed's differences (0.25 over 4 tasks), averaged.
    assert out["stderr"] == pytest.approx(np.sqrt((0.25 / 4 + 0.25 / 4) / 4), abs=1e-4)
    single = demo.paired([[1, 0, 1, 1], [0, 0, 1, 1]])
    assert single["mean"] == 0.625
    assert single["stderr"] > demo.paired([[1, 0, 1, 1], [1, 0, 1, 1]])["stderr"]


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="NextConfig.filter"):
        demo.NextConfig(filter="vibes")
    with pytest.raises(ValueError, match="LoopConfig.num_accumulators"):
        loops.LoopConfig(num_accumulators=0)
    with pytest.raises(ValueError, match="DemoConfig.arms"):
        demo.DemoConfig(arms=("oracle",))


def _row(seed, trace_test, val_a, val_b, test_a, test_b):
    evals = [{"val": {"passed": p}, "test": {"passed": p, "consistent": p}} for p in trace_test]
    return {"seed": seed, "trace": {"evals": evals, "iterations": [{"kept": 2, "kept_consistent": 1}]},
            "ablation": {"test": {"passed": [0, 0]}},
            "baselines": {"a": test_a, "b": test_b}, "baselines_val": {"a": val_a, "b": val_b}}


def test_the_strongest_baseline_is_chosen_on_validation_not_on_test():
    config = demo.DemoConfig(next=demo.NextConfig(num_iterations=1))
    rows = [_row(s, [[0, 0], [1, 1]], val_a=[0, 0], val_b=[1, 0], test_a=[1, 1], test_b=[0, 0]) for s in (0, 1)]
    summary = demo.summarize(rows, config)
    assert summary["best_baseline"] == "b"  # a is stronger on test, b on validation
    assert summary["gain_over_best_baseline"]["mean"] == 1.0
    assert demo.headline(summary, 1.0)["best_baseline"] == "b"


TINY = ["run.DemoConfig.seeds = (0, 1)", "run.DataConfig.num_seed = 6", "run.DataConfig.num_train = 8", "run.DataConfig.num_val = 4",
        "run.DataConfig.num_test = 6", "run.DataConfig.num_baseline = 50", "run.DataConfig.workers = 1",
        "run.DataConfig.num_pretrain = 8", "run.PretrainConfig.steps = 2",
        "run.BootstrapConfig.steps = 2", "run.NextConfig.num_iterations = 1", "run.NextConfig.num_samples = 2",
        "run.NextConfig.finetune_steps = 1", "run.DemoConfig.sample_batch = 8"]
# A smaller model than the default, bound from a gin file of the test's own (as a user would).
TINY_MODEL_GIN = """from __gin__ import dynamic_registration
from next_jax import models
from next_jax.demo import run
run.DemoConfig.model = @models.ModelConfig()
models.ModelConfig:
  vocab_size = 384
  hidden_size = 16
  num_layers = 1
  num_heads = 2
  num_kv_heads = 2
  head_dim = 8
  mlp_dim = 32
  max_seq_len = 512
"""


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.slow
def test_demo_runs_every_arm_and_prints_one_json_line(tmp_path, capsys, clean_gin):
    model_dir = str(tmp_path / "demo")
    bindings = TINY + [f"MODEL_DIR = '{model_dir}'"]
    model_gin = tmp_path / "tiny_model.gin"
    model_gin.write_text(TINY_MODEL_GIN)
    line = main_lib.run(None, ["gin_configs/experiments/cpu_demo.gin", str(model_gin)], bindings, [])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == line
    for key in ("next_trace_pass_at_1", "control_pass_at_1", "no_trace_pass_at_1", "upper_bound_pass_at_1",
                "ablation_no_trace_at_test", "gain_over_control", "gain_over_control_stderr", "gain_over_no_trace",
                "gain_over_no_trace_stderr", "gain_over_bootstrap", "gain_over_bootstrap_stderr", "baselines",
                "counterfactual_follows_edit", "rationale_consistent", "best_iteration", "seeds", "wall_s"):
        assert key in line, key
    assert line["seeds"] == [0, 1] and len(line["next_trace_pass_at_1"]) == 2
    assert all(0.0 <= v <= 1.0 for v in line["next_trace_pass_at_1"] + line["control_pass_at_1"])
    report = open(os.path.join(model_dir, "report.md")).read()
    assert "| stage | seconds |" in report and "NExT with traces" in report
    with open(os.path.join(model_dir, "demo.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
