"""The README's training and evaluation commands, run as written (tiny settings appended), log no
warning: a warning on a normal run teaches users to ignore warnings. Also: in-training and
standalone evaluation land in distinct TensorBoard runs whose tags name the data scored."""

import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--gin.TRAIN_STEPS=4", "--gin.checkpoints.CheckpointConfig.period=2", "--gin.EVAL_PERIOD=2", "--gin.EVAL_BATCHES=1"]

WARNING_LINE = re.compile(r"^([WEF]\d{4} |(WARNING|ERROR|CRITICAL)[: ]|Traceback)")


def readme_commands():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Training", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("python -m next_jax.main ")]


def warnings_in(stderr: str) -> list:
    return [line for line in stderr.splitlines() if WARNING_LINE.match(line)]


@pytest.mark.slow
def test_readme_training_and_eval_commands_log_no_warning(tmp_path):
    from tests.test_train import read_scalars

    commands = readme_commands()
    assert len(commands) == 2 and "--run_mode=eval" in commands[1], commands
    model_dir = tmp_path / "train_tiny"
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs them (the test suite sets it)
    # Train, rerun the same command (a finished run: restores its last checkpoint), evaluate.
    for command in (commands[0], commands[0], commands[1]):
        argv = [a.replace("/tmp/train_tiny", str(model_dir)) for a in shlex.split(command)]
        assert argv[:3] == ["python", "-m", "next_jax.main"]
        proc = subprocess.run([sys.executable, *argv[1:], *TINY], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert warnings_in(proc.stderr) == [], (command, warnings_in(proc.stderr))

    task_tag = "demo_repair/validation/loss"
    assert set(read_scalars(model_dir / "eval", task_tag)) == {2, 4}  # the training state as it trained
    assert set(read_scalars(model_dir / "eval_checkpoints", task_tag)) == {4}  # the saved checkpoint 4
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(model_dir / "eval_checkpoints"), size_guidance={"tensors": 0})
    acc.Reload()
    [scored] = acc.Tensors("scored/text_summary") if "scored/text_summary" in acc.Tags()["tensors"] else \
        acc.Tensors("scored")
    text = scored.tensor_proto.string_val[0].decode()
    assert f"checkpoint {model_dir / 'checkpoints' / '4'}" in text and "split validation" in text
    assert not (model_dir / "RUN_LEASE.json").exists()


def test_warning_filter_sees_absl_and_python_warnings():
    assert warnings_in("W1207 06:13:58.315279 1 checkpoint.py:202] Metadata file does not exist: x") != []
    assert warnings_in("WARNING:absl:Metadata file does not exist") != []
    assert warnings_in("I1207 06:13:58.3 1 x.py:1] fine\nI0000 00:00:1796634848.9 2 port.cc:153] fine") == []
    # abseil's notice as TensorFlow's libraries load (next_jax.startup_log removes it) counts too.
    assert warnings_in("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")


@pytest.mark.slow
def test_readme_local_multiprocess_command_logs_no_warning(tmp_path):
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    [command] = [line for line in text.splitlines() if line.startswith("launch/tpu_run.sh --local_processes=")]
    argv = [a.replace("/tmp/train_2x1", str(tmp_path / "train_2x1")) for a in shlex.split(command)]
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it (the test suite sets it)
    proc = subprocess.run([os.path.join(REPO, argv[0]), *argv[1:], *TINY], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    # Each process's output comes back on stdout with its "[i] " prefix.
    lines = [re.sub(r"^\[\d+\] ", "", line) for line in (proc.stdout + proc.stderr).splitlines()]
    assert warnings_in("\n".join(lines)) == [], warnings_in("\n".join(lines))
    assert (tmp_path / "train_2x1" / "checkpoints" / "4").is_dir()
