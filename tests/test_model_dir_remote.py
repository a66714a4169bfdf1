"""MODEL_DIR on a filesystem other than the local disk: TensorFlow's in-memory ``ram://`` stands in
for ``gs://``. A tiny train and a tiny pipeline, started the way users start them (next_jax.main
with gin files), must write every output there (samples, manifests, TensorBoard event files, the
operative config, the report) and nothing on the local disk: neither in the working directory nor
in the temporary directory."""

import json
import tempfile
from pathlib import Path

import pytest

from next_jax import io as nj_io
from next_jax import main
from next_jax.data.records import RepairTask, Sample, Verdict, read_all, write_records

pytestmark = pytest.mark.heavy  # trains and compiles real models: tens of seconds each

ADD = "def f(x):\n    y = x + 1\n    return y\n"


def _files(*roots: Path) -> list:
    """Files under ``roots``, except the converted function sources TensorFlow's autograph (SeqIO's
    input pipeline) keeps in the temporary directory until the process exits: TensorFlow's
    scratch, not an output of the run."""
    return sorted(str(p) for root in roots for p in root.rglob("*")
                  if not p.name.startswith("__autograph_generated_file"))


def _remote_files(root: str) -> list:
    """Every file under a ram:// directory, relative to it."""
    import tensorflow as tf

    out = []
    for directory, _, names in tf.io.gfile.walk(root):
        out += [nj_io.join(directory, n)[len(root) + 1:] for n in names]
    return sorted(out)


@pytest.fixture
def local_disk(tmp_path, monkeypatch):
    """(cwd, TMPDIR): both empty directories the run is pointed at; the test checks they stay empty."""
    cwd, tmpdir = tmp_path / "cwd", tmp_path / "tmpdir"
    cwd.mkdir()
    tmpdir.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its first answer
    return cwd, tmpdir


def _run(run_mode, gin_files, bindings):
    import gin

    gin.clear_config()
    try:
        return main.run(run_mode, gin_files, bindings, [])
    finally:
        gin.clear_config()


@pytest.mark.slow
def test_train_writes_only_to_a_ram_model_dir(local_disk):
    model_dir = "ram://next_jax_model_dir/train"
    bindings = [f"MODEL_DIR = '{model_dir}'", "TRAIN_STEPS = 2", "BATCH_SIZE = 8", "train.LoggingConfig.summary_period = 1",
                "EVAL_PERIOD = 2", "EVAL_BATCHES = 1", "checkpoints.CheckpointConfig.period = 1"]
    gin_files = ["experiments/train_tiny_cpu.gin"]
    # orbax writes checkpoints through TensorStore, which cannot reach ram://: refused before any step.
    with pytest.raises(ValueError, match="no ram:// filesystem"):
        _run("train", gin_files, bindings)
    result = _run("train", gin_files, bindings + ["checkpoints.CheckpointConfig.enabled = False"])
    assert result.step == 2 and result.checkpoint is None
    files = _remote_files(model_dir)
    assert any(f.startswith("train/events.out.tfevents.") for f in files), files
    assert any(f.startswith("eval/events.out.tfevents.") for f in files), files
    operative = nj_io.read_text(nj_io.join(model_dir, "config.gin"))
    assert "checkpoints.CheckpointConfig" in operative and "enabled = False" in operative
    assert not [f for f in files if f.endswith(".tmp")]
    assert _files(*local_disk) == []
    nj_io.rmtree(model_dir)


def test_pipeline_writes_only_to_a_ram_model_dir(local_disk, tmp_path):
    tasks_file = tmp_path / "input" / "tasks.jsonl"  # inputs may be local; outputs may not
    tasks_file.parent.mkdir()
    write_records(str(tasks_file), [
        RepairTask(task_id="ram/0", source="test", description="Add one.", buggy_code=ADD.replace("+ 1", "+ 2"),
                   entry_point="f", tests=["assert f(1) == 2"], reference_fix=ADD),
        RepairTask(task_id="ram/1", source="test", description="Add one.", buggy_code=ADD.replace("x + 1", "x"),
                   entry_point="f", tests=["assert f(2) == 3", "assert f(0) == 1"], reference_fix=ADD),
    ])
    model_dir = "ram://next_jax_model_dir/pipeline"
    metrics = _run("pipeline", ["runs/pipeline.gin", "models/tiny.gin"], [
        f"MODEL_DIR = '{model_dir}'", "pipeline.PipelineConfig.tasks_format = 'repair_tasks'", f"TASKS_FILE = '{tasks_file}'",
        "TASK_FEATURE_LENGTHS = {'inputs': 256}", "decoding.SamplingConfig.num_samples = 2",
        "decoding.SamplingConfig.max_new_tokens = 4", "decoding.SamplingConfig.batch_size = 8",
        "runs.ExecutionConfig.workers = 1"])
    files = _remote_files(model_dir)
    for name in ("config.gin", "metrics.json", "report.md", "data/manifest.json", "data/tasks.jsonl",
                 "data/traced.jsonl", "data/reference_verdicts.jsonl", "iteration_0/eval/manifest.json",
                 "iteration_0/eval/trace.samples.jsonl", "iteration_0/eval/trace.verdicts.jsonl"):
        assert name in files, (name, files)
    assert any(f.startswith("next/events.out.tfevents.") for f in files), files
    assert not [f for f in files if f.endswith(".tmp") or ".chunks/" in f], files
    samples = read_all(nj_io.join(model_dir, "iteration_0/eval/trace.samples.jsonl"), Sample)
    verdicts = read_all(nj_io.join(model_dir, "iteration_0/eval/trace.verdicts.jsonl"), Verdict)
    assert len(samples) == 4 and [v.sample_id for v in verdicts] == [s.sample_id for s in samples]
    assert json.loads(nj_io.read_text(nj_io.join(model_dir, "metrics.json")))["samples"] == metrics["samples"] == 4
    assert metrics["reference_fixes_passing"] == 2
    assert "decoding.SamplingConfig" in nj_io.read_text(nj_io.join(model_dir, "config.gin"))
    assert _files(*local_disk) == []
    nj_io.rmtree(model_dir)
