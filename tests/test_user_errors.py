"""User errors found after start-up are one line and exit status 2, naming file, line and field (or
the gin binding) and what to do: empty and malformed task files in every binary that reads them,
and a real-model directory without weights."""

import json
import os
import subprocess
import sys

import pytest

from next_jax.data.records import RepairTask, write_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD = "def f(x):\n    return x + 1\n"


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_error_line(proc, prefix=""):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _pipeline(tmp_path, tasks_file):
    return _run(["-m", "next_jax.main", "--gin_file=gin_configs/runs/pipeline.gin",
                 "--gin_file=gin_configs/models/tiny.gin", '--gin.pipeline.PipelineConfig.tasks_format="repair_tasks"',
                 f'--gin.TASKS_FILE="{tasks_file}"', "--gin.TASK_FEATURE_LENGTHS={'inputs': 256}",
                 f'--gin.MODEL_DIR="{tmp_path / "run"}"'], REPO)


@pytest.mark.heavy
def test_pipeline_task_file_with_a_bad_line_names_file_line_and_field(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    good = RepairTask(task_id="t/0", source="test", description="Add one.", buggy_code=ADD.replace("+ 1", "+ 2"),
                      entry_point="f", tests=["assert f(1) == 2"], reference_fix=ADD)
    write_records(str(tasks), [good])
    bad = good.to_dict()
    bad["task_id"], bad["tests"] = "t/1", "assert f(1) == 2"
    with open(tasks, "a") as f:
        f.write(json.dumps(bad) + "\n")
    line = _one_error_line(_pipeline(tmp_path, tasks), "next_jax:")
    assert line.startswith(f"next_jax: {tasks}:2: field 'tests': "), line


@pytest.mark.heavy
def test_pipeline_empty_task_file_is_an_error_not_a_tensorflow_one(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    line = _one_error_line(_pipeline(tmp_path, tmp_path / "empty.jsonl"), "next_jax:")
    assert line == (f"next_jax: {tmp_path / 'empty.jsonl'}: the tasks file is empty (no JSON line); give TASKS_FILE "
                    "a file with at least one task")


def test_check_and_tracing_refuse_an_empty_tasks_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "samples.jsonl").write_text(json.dumps({"task_id": "x"}) + "\n")
    check = _run(["-m", "next_jax.execution", f"--tasks={tmp_path / 'empty.jsonl'}",
                  f"--samples={tmp_path / 'samples.jsonl'}", f"--out={tmp_path / 'v.jsonl'}", "--workers=1"], REPO)
    assert _one_error_line(check, "error:") == (
        f"error: {tmp_path / 'empty.jsonl'}: the tasks file is empty (no JSON line); give --tasks a RepairTask or "
        "TracedTask JSON Lines file")
    tracing = _run(["-m", "next_jax.tracing", f"--tasks={tmp_path / 'empty.jsonl'}",
                    f"--out={tmp_path / 'traced.jsonl'}", "--workers=1"], REPO)
    assert tracing.returncode == 2 and not (tmp_path / "traced.jsonl").exists()
    assert (f"{tmp_path / 'empty.jsonl'}: the tasks file is empty (no JSON line); give --tasks a RepairTask JSON "
            "Lines file with at least one task") in tracing.stderr.splitlines()


@pytest.mark.heavy
def test_real_model_directory_without_weights_names_the_repository(tmp_path):
    ckpt = tmp_path / "Qwen2.5-Coder-1.5B"
    ckpt.mkdir()
    (ckpt / "tokenizer.json").write_text("{}")
    proc = _run(["-m", "next_jax.main", "--run_mode=infer", "--gin_file=gin_configs/runs/infer.gin",
                 "--gin_file=gin_configs/models/qwen2_5_coder_1_5b.gin", f'--gin.HF_CHECKPOINT_DIR="{ckpt}"',
                 f'--gin.models.ModelRef.checkpoint="{ckpt}"', f'--gin.MODEL_DIR="{tmp_path / "run"}"', '--gin.TASK_NAME="t"',
                 "--gin.TASK_FEATURE_LENGTHS={'inputs': 8}"], REPO)
    assert _one_error_line(proc, "next_jax:") == (
        f"next_jax: HF_CHECKPOINT_DIR={str(ckpt)!r} has no config.json, no *.safetensors: download the Hugging Face "
        f"repository Qwen/Qwen2.5-Coder-1.5B there (e.g. huggingface-cli download Qwen/Qwen2.5-Coder-1.5B "
        f"--local-dir {ckpt}); the directory must hold config.json, the weights as *.safetensors (one "
        "model.safetensors, or shards with model.safetensors.index.json) and tokenizer.json")
    assert not (tmp_path / "run").exists()  # stopped before anything was written


def test_gin_type_check_covers_only_what_the_run_calls():
    import gin

    from next_jax import main
    from next_jax.gin_types import GinTypeError

    experiment = os.path.join(REPO, "gin_configs/experiments/train_tiny_cpu.gin")
    try:
        gin.clear_config()
        split = "checkpoint_eval.CheckpointEvalConfig.split = None"
        main.parse_gin([experiment], [split], [], "train")  # train never builds evaluate's config
        gin.clear_config()
        with pytest.raises(GinTypeError, match=r"checkpoint_eval.CheckpointEvalConfig.split = None: split takes"):
            main.parse_gin([experiment], [split], [], "eval")  # evaluate's split is a string
        gin.clear_config()
        with pytest.raises(GinTypeError, match=r"train.TrainEvalConfig.batches = 'two' through macro EVAL_BATCHES"):
            main.parse_gin([experiment], ["EVAL_BATCHES = 'two'"], [], "train")
        gin.clear_config()
        with pytest.raises(GinTypeError, match=r"models.ModelConfig.hidden_size = 'x': hidden_size takes an int"):
            main.parse_gin([experiment], ["models.ModelConfig.hidden_size = 'x'"], [], "train")  # via MODEL
        gin.clear_config()
        main.parse_gin([experiment], ["LEARNING_RATE = 1", "TRAIN_STEPS = 3"], [], "train")  # an int is a float
    finally:
        gin.clear_config()
