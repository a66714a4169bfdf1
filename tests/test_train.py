"""Training end to end on a tiny model: the Python API, resume, TensorBoard files, start-up errors."""

import jax
import numpy as np
import pytest

from next_jax import checkpoints, inputs, optimizers, partitioning, train
from next_jax.demo import task as demo_task
from next_jax.models import ModelConfig
from next_jax.models import lm as lm_lib

pytestmark = pytest.mark.heavy  # trains and compiles real models: tens of seconds each

CONFIG = ModelConfig(vocab_size=384, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                     mlp_dim=64, tie_embeddings=True, max_seq_len=256)
LENGTHS = {"inputs": 128, "targets": 48}


@pytest.fixture(scope="module")
def task():
    return demo_task.demo_repair_task(name="test_train_demo", num_train=64, num_eval=16)


def _data(task, lengths=LENGTHS, batch_size=8):
    return inputs.DatasetConfig(task_name=task, task_feature_lengths=lengths, batch_size=batch_size)


def _train(task, model_dir, steps, **kw):
    kw.setdefault("checkpoint_cfg", checkpoints.CheckpointConfig(period=2, keep=None))
    return train.train(train.TrainConfig(
        model=CONFIG, dataset_cfg=_data(task), train_steps=steps, model_dir=str(model_dir),
        logging_cfg=train.LoggingConfig(summary_period=1, peak_flops=1e11),
        optimizer=optimizers.AdamW(learning_rate=optimizers.Schedule(peak=1e-2, warmup_steps=1)), **kw,
    ))


def read_scalars(directory, tag):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    acc = event_accumulator.EventAccumulator(str(directory), size_guidance={"tensors": 0})
    acc.Reload()
    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def _params(checkpoint):
    from next_jax.models import weights

    part = partitioning.Partitioner(partitioning.make_mesh({"data": 1}, devices=jax.devices()[:1]))
    params, _ = weights.load_params(checkpoint, CONFIG, part)
    return jax.device_get(params)


def test_train_writes_tensorboard_checkpoints_and_returns_its_result(task, tmp_path):
    result = _train(task, tmp_path, 2, eval_cfg=train.TrainEvalConfig(split="validation", period=2, batches=1))
    assert result.step == 2 and result.checkpoint == str(tmp_path / "checkpoints" / "2")
    losses = read_scalars(tmp_path / "train", "loss")
    assert sorted(losses) == [1, 2] and result.metrics["loss"] == pytest.approx(losses[2])
    for tag in ("accuracy", "learning_rate", "grad_norm", "tokens_per_s", "mfu", "step_time_s"):
        assert len(read_scalars(tmp_path / "train", tag)) == 2, tag
    assert read_scalars(tmp_path / "train", "compile_time_s")[1] > 0
    assert set(read_scalars(tmp_path / "train", "steps_per_sec")) == {2}  # clu's progress report, at the end
    assert set(read_scalars(tmp_path / "eval", "test_train_demo/validation/loss")) == {2}
    table = (tmp_path / "param_table.txt").read_text()  # every parameter's layout, for the record
    assert "layers_0/attn/q_proj/kernel" in table and "parameters" in table.splitlines()[-1]


@pytest.mark.slow
def test_train_learns_and_resumes_bitwise(task, tmp_path):
    straight = _train(task, tmp_path / "straight", 4, eval_cfg=train.TrainEvalConfig(split="validation", period=4, batches=1))
    assert straight.step == 4 and straight.checkpoint == str(tmp_path / "straight" / "checkpoints" / "4")
    losses = read_scalars(tmp_path / "straight" / "train", "loss")
    assert sorted(losses) == [1, 2, 3, 4]
    assert losses[4] < losses[1]
    for tag in ("accuracy", "learning_rate", "grad_norm", "tokens_per_s", "mfu", "step_time_s"):
        assert len(read_scalars(tmp_path / "straight" / "train", tag)) == 4, tag
    assert read_scalars(tmp_path / "straight" / "train", "compile_time_s")[1] > 0
    assert set(read_scalars(tmp_path / "straight" / "eval", "test_train_demo/validation/loss")) == {4}
    assert straight.metrics["loss"] == pytest.approx(losses[4])

    # Two runs of 2 steps each (the second resumes from the first's checkpoint) = one run of 4.
    first = _train(task, tmp_path / "split", 2)
    assert first.step == 2
    second = _train(task, tmp_path / "split", 4)
    assert second.step == 4
    resumed = read_scalars(tmp_path / "split" / "train", "loss")
    assert [resumed[s] for s in (1, 2, 3, 4)] == [losses[s] for s in (1, 2, 3, 4)]
    jax.tree.map(np.testing.assert_array_equal, _params(second.checkpoint), _params(straight.checkpoint))

    # A finished run answers with its result without training.
    again = _train(task, tmp_path / "split", 4)
    assert again.step == 4 and again.metrics["loss"] == pytest.approx(second.metrics["loss"])

    # Fine-tuning from a finished run's checkpoint starts at step 0 from those weights.
    tuned = _train(task, tmp_path / "tuned", 1, initial_checkpoint=straight.checkpoint)
    assert read_scalars(tmp_path / "tuned" / "train", "loss")[1] < losses[1]


def test_microbatches_give_the_same_update(task):
    from next_jax import trainer as trainer_lib

    part = partitioning.Partitioner(partitioning.make_mesh())
    opt = optimizers.AdamW(learning_rate=optimizers.Schedule(peak=1e-2, decay="constant")).make(10)
    dataset = inputs.get_dataset(task, LENGTHS, split="train", batch_size=16, shuffle=False, seed=0, pack=True,
                                 repeat=True)
    batch = next(dataset.as_numpy_iterator())
    results = []
    for m in (1, 2):
        tr = trainer_lib.Trainer(lm_lib.DecoderLM(CONFIG), opt, part, num_microbatches=m)
        state, metrics = tr.train_step(tr.init_state(0), tr.global_batch(batch))
        results.append((jax.device_get(state.params), jax.device_get(metrics)))
    (p1, m1), (p2, m2) = results
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)
    np.testing.assert_allclose(m1["grad_norm"], m2["grad_norm"], rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), p1, p2)


def test_start_up_errors_say_what_to_fix(task, tmp_path):
    def start(model=CONFIG, data=None):
        train.train(train.TrainConfig(model=model, dataset_cfg=data or _data(task), train_steps=1,
                                      model_dir=str(tmp_path / "a")))

    with pytest.raises(ValueError, match=r"task_feature_lengths=.*exactly the lengths"):
        start(data=_data(task, {"targets": 48}))
    with pytest.raises(ValueError, match="max_seq_len=256"):
        start(data=_data(task, {"inputs": 256, "targets": 48}))
    with pytest.raises(ValueError, match=r"259 ids but the model's vocab_size is 128"):
        start(model=CONFIG.replace(vocab_size=128))
    with pytest.raises(FileNotFoundError, match="initial_checkpoint=.*does not exist"):
        _train(task, tmp_path / "a", 1, initial_checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="not registered|not a registered"):
        start(data=_data("no_such_task"))
    with pytest.raises(ValueError, match="batch_size=12"):
        start(data=_data(task, batch_size=12))


def test_model_dir_on_ram_filesystem_writes_nothing_locally(task, tmp_path, monkeypatch):
    import tensorflow as tf

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("TMPDIR", str(scratch))
    model_dir = "ram://test_train_ram/run"
    with pytest.raises(ValueError, match="no ram:// filesystem"):
        _train(task, model_dir, 1)
    result = _train(task, model_dir, 2, checkpoint_cfg=checkpoints.CheckpointConfig(enabled=False))
    assert result.step == 2 and result.checkpoint is None
    assert tf.io.gfile.glob(model_dir + "/train/events.out.tfevents.*")
    assert list(scratch.iterdir()) == []
