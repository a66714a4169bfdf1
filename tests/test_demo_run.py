"""The CPU demo end to end through its gin file, with tiny settings: stages, outputs, the JSON line."""

import json
import os

import gin
import pytest

from next_jax import main as main_lib
from next_jax.data.records import TracedTask, read_all
from next_jax.demo import run as demo
from next_jax.selftrain.stages import SettingsChangedError

TINY = ["NUM_SEED = 8", "NUM_TRAIN = 6", "NUM_DEV = 6", "BOOTSTRAP_STEPS = 2", "FINETUNE_STEPS = 1",
        "NUM_ITERATIONS = 1", "NUM_SAMPLES = 2", "BATCH_SIZE = 8", "MAX_NEW_TOKENS = 8", "WORKERS = 1",
        "models.ModelConfig.hidden_size = 32", "models.ModelConfig.num_layers = 1",
        "models.ModelConfig.head_dim = 8", "models.ModelConfig.mlp_dim = 64"]


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_demo_runs_every_stage_and_prints_one_json_line(tmp_path, capsys, clean_gin):
    model_dir = str(tmp_path / "demo")
    bindings = TINY + [f"MODEL_DIR = '{model_dir}'"]
    summary = main_lib.run(None, ["gin_configs/experiments/cpu_demo.gin"], bindings, [])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    line = json.loads(last)

    assert set(line) >= {"dev_pass_at_1", "control_pass_at_1", "no_trace_pass_at_1", "best_iteration", "wall_s"}
    assert len(line["dev_pass_at_1"]) == 2 and len(line["no_trace_pass_at_1"]) == 2  # bootstrap, iteration 1
    for value in line["dev_pass_at_1"] + line["no_trace_pass_at_1"] + [line["control_pass_at_1"]]:
        assert 0.0 <= value <= 1.0
    assert line["best_iteration"] in (0, 1) and line["wall_s"] > 0
    assert line["dev_pass_at_1"] == summary["dev_pass_at_1"]

    # The data: real traces of every task, template answers on the seed set.
    seed = read_all(os.path.join(model_dir, "data", "seed.jsonl"), TracedTask)
    dev = read_all(os.path.join(model_dir, "data", "dev.jsonl"), TracedTask)
    assert len(seed) == 8 and len(dev) == 6
    assert all("__return__=" in t.traces[0].traced_code and t.meta["answer"] for t in seed)

    # Each arm's stages wrote their outputs and manifests; the control trained as long as NExT did.
    for variant in ("trace", "no_trace"):
        base = os.path.join(model_dir, "seed_0", variant)
        assert json.load(open(os.path.join(base, "bootstrap", "manifest.json")))["status"] == "done"
        next_summary = json.load(open(os.path.join(base, "next", "summary.json")))
        assert next_summary["dev_pass_at_1"] == summary["per_seed"][0][variant]["dev_pass_at_1"]
        assert os.path.exists(os.path.join(base, "next", "report.md"))
    control = summary["per_seed"][0]["control"]
    assert control["steps"] == sum(summary["per_seed"][0]["trace"]["finetune_steps"]) == 1
    assert os.path.exists(os.path.join(model_dir, "seed_0", "trace", "control", "eval", "manifest.json"))
    assert json.load(open(os.path.join(model_dir, "demo.json")))["dev_pass_at_1"] == line["dev_pass_at_1"]

    # Same command again: every stage is skipped and the figures are the same.
    gin.clear_config()
    again = main_lib.run(None, ["gin_configs/experiments/cpu_demo.gin"], bindings, [])
    assert again["dev_pass_at_1"] == summary["dev_pass_at_1"]
    assert again["control_pass_at_1"] == summary["control_pass_at_1"]
    assert all(wall == summary["stage_wall_s"][name] for name, wall in again["stage_wall_s"].items())

    # A changed setting under the same MODEL_DIR is an error that names it.
    gin.clear_config()
    with pytest.raises(SettingsChangedError, match="num_dev"):
        main_lib.run(None, ["gin_configs/experiments/cpu_demo.gin"], bindings + ["NUM_DEV = 7"], [])


def test_summary_means_stderr_and_margins():
    rows = [
        {"seed": 0, "trace": {"dev_pass_at_1": [0.1, 0.3, 0.25]}, "control": {"dev_pass_at_1": 0.2},
         "no_trace": {"dev_pass_at_1": [0.05, 0.1, 0.1]}},
        {"seed": 1, "trace": {"dev_pass_at_1": [0.2, 0.3, 0.45]}, "control": {"dev_pass_at_1": 0.2},
         "no_trace": {"dev_pass_at_1": [0.05, 0.1, 0.2]}},
    ]
    summary = demo.summarize(rows, ("trace", "no_trace"), control=True)
    assert summary["dev_pass_at_1"] == [0.15, 0.3, 0.35]
    assert summary["best_iteration"] == 2
    assert summary["dev_pass_at_1_stderr"] == [0.05, 0.0, 0.1]
    assert summary["gain_over_bootstrap"] == pytest.approx(0.2)
    assert summary["control_pass_at_1"] == 0.2 and summary["gain_over_control"] == pytest.approx(0.15)
    assert summary["no_trace_pass_at_1"] == [0.05, 0.1, 0.15]
    alone = demo.summarize(rows[:1], ("no_trace",), control=False)
    assert "dev_pass_at_1" not in alone and alone["no_trace_pass_at_1_stderr"] == [None, None, None]
    # One seed: binomial errors over the dev tasks, and the margin's from both rates.
    one = demo.summarize(rows[1:], ("trace",), control=True, num_dev=100)
    assert one["dev_pass_at_1_stderr"] == [0.04, round((0.3 * 0.7 / 100) ** 0.5, 4), round((0.45 * 0.55 / 100) ** 0.5, 4)]
    assert one["control_pass_at_1_stderr"] == 0.04
    assert one["gain_over_control_stderr"] == pytest.approx((0.0016 + 0.45 * 0.55 / 100) ** 0.5, abs=1e-4)


def test_bad_variants_are_rejected_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="proxy"):
        demo.run_demo(model_dir=str(tmp_path), model=None, vocabulary=None, task_feature_lengths={},
                      variants=("trace", "proxy"))
    with pytest.raises(ValueError, match="seeds is empty"):
        demo.run_demo(model_dir=str(tmp_path), model=None, vocabulary=None, task_feature_lengths={}, seeds=())
    assert not os.listdir(tmp_path)
