"""Kill and resume: SIGKILL a training run between checkpoints, rerun the same command, and get
bitwise the final parameters and every logged loss of an uninterrupted run."""

import glob
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A step of this model takes about 10 ms on an idle CPU: 400 steps leave the run seconds of work
# after its first checkpoint, so the kill (up to 1 s later) lands before the last one at any load.
STEPS, PERIOD = 400, 8


def _command(model_dir):
    return [
        sys.executable, "-m", "next_jax.main", "--run_mode=train",
        "--gin_file=gin_configs/experiments/train_tiny_cpu.gin",
        f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={STEPS}", f"--gin.checkpoints.CheckpointConfig.period={PERIOD}",
        "--gin.BATCH_SIZE=8", "--gin.train.TrainEvalConfig.split=None",
        "--gin.models.ModelConfig.hidden_size=32", "--gin.models.ModelConfig.num_layers=2",
        "--gin.models.ModelConfig.mlp_dim=64", "--gin.models.ModelConfig.head_dim=8",
    ]


def _env():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT
    return env


def _losses(train_dir):
    """[(step, loss)] of every event file, in write order (a resumed run appends a second file)."""
    from tensorboard.util import tensor_util
    from tensorflow.core.util import event_pb2
    import tensorflow as tf

    out = []
    for path in sorted(glob.glob(os.path.join(train_dir, "events.out.tfevents.*")), key=os.path.getmtime):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "loss":
                    out.append((event.step, float(tensor_util.make_ndarray(value.tensor))))
    return out


def _params(model_dir):
    from next_jax import checkpoints

    import orbax.checkpoint as ocp

    return ocp.PyTreeCheckpointer().restore(checkpoints.params_item_dir(model_dir))["params"]


@pytest.mark.slow
def test_sigkill_between_checkpoints_then_resume_is_bitwise_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_command(straight), cwd=ROOT, env=_env(), check=True, capture_output=True)

    proc = subprocess.Popen(_command(killed), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / str(PERIOD)
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.0))  # a random step after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    saved = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] < STEPS

    subprocess.run(_command(killed), cwd=ROOT, env=_env(), check=True, capture_output=True)

    reference = dict(_losses(straight / "train"))
    assert sorted(reference) == list(range(1, STEPS + 1))
    logged = _losses(killed / "train")
    resumed_from = saved[-1]
    after_restart = logged[-(STEPS - resumed_from):]
    assert [s for s, _ in after_restart] == list(range(resumed_from + 1, STEPS + 1))
    for step, loss in logged:  # before and after the kill, every logged loss is the reference one
        assert loss == reference[step], step
    jax.tree.map(np.testing.assert_array_equal, _params(killed), _params(straight))
