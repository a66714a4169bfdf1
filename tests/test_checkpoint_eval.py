"""checkpoint_eval: teacher-forced metrics of a run's checkpoints and sampling metrics through seqio.Evaluator."""

import pytest

from next_jax import checkpoint_eval, checkpoints, inputs, train
from next_jax.demo import task as demo_task
from next_jax.models import ModelConfig

pytestmark = pytest.mark.heavy  # trains and compiles real models: tens of seconds each

CONFIG = ModelConfig(vocab_size=384, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                     mlp_dim=64, tie_embeddings=True, max_seq_len=256)
LENGTHS = {"inputs": 128, "targets": 48}


@pytest.mark.slow
def test_evaluate_latest_and_all_checkpoints_with_inference(tmp_path):
    from tests.test_train import read_scalars

    task = demo_task.demo_repair_task(name="test_evaluate_demo", num_train=32, num_eval=8)
    result = train.train(train.TrainConfig(
        model=CONFIG, dataset_cfg=inputs.DatasetConfig(task_name=task, task_feature_lengths=LENGTHS, batch_size=8),
        train_steps=2, model_dir=str(tmp_path), logging_cfg=train.LoggingConfig(summary_period=1, peak_flops=1e11),
        checkpoint_cfg=checkpoints.CheckpointConfig(period=1, keep=None)))
    assert result.checkpoint.endswith("/checkpoints/2")
    latest = checkpoint_eval.evaluate(checkpoint_eval.CheckpointEvalConfig(model=CONFIG, task_name=task, task_feature_lengths=LENGTHS, model_dir=str(tmp_path),
                               inference=checkpoint_eval.SamplingConfig(num_samples=2, max_new_tokens=8, temperature=1.0)))
    assert list(latest) == [2]
    metrics = latest[2]
    assert metrics["target_tokens"] > 0 and 0 <= metrics["accuracy"] <= 1
    assert metrics[f"{task}/pass@1"] == 0.0  # 2 steps of training cannot write the answers
    every = checkpoint_eval.evaluate(checkpoint_eval.CheckpointEvalConfig(model=CONFIG, task_name=task, task_feature_lengths=LENGTHS, model_dir=str(tmp_path),
                              checkpoint_steps="all"))
    assert sorted(every) == [1, 2]
    assert every[2]["loss"] == pytest.approx(metrics["loss"], rel=1e-6)
    assert every[1]["loss"] != every[2]["loss"]
    assert set(read_scalars(tmp_path / "eval_checkpoints", f"{task}/validation/loss")) == {1, 2}
    with pytest.raises(FileNotFoundError, match="no checkpoint for step 7"):
        checkpoint_eval.evaluate(checkpoint_eval.CheckpointEvalConfig(model=CONFIG, task_name=task, task_feature_lengths=LENGTHS, model_dir=str(tmp_path),
                          checkpoint_steps=7))


def test_pass_at_k_metric_counts_passing_samples():
    metric = checkpoint_eval.pass_at_k_metric(ks=(1, 2))
    out = metric(["a", "b"], [None, None], {"samples": [["a", "x"], ["y", "z"]]})
    assert out == {"pass@1": pytest.approx(0.25), "pass@2": pytest.approx(0.5)}
