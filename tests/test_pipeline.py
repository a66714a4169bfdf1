"""The pipeline entry function (the loop with zero iterations) end to end, started the way users
start it (main + gin): every stage, its manifest, resume without redoing work, and a changed
setting refused with its name."""

import json
import os
import subprocess
import sys

import pytest

from next_jax.data.records import RepairTask, Sample, TracedTask, Verdict, read_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(model_dir, *extra):
    cmd = [sys.executable, "-m", "next_jax.main", "--gin_file=runs/pipeline.gin", "--gin_file=models/tiny.gin",
           f"--gin.MODEL_DIR='{model_dir}'", "--gin.pipeline.PipelineConfig.tasks_format='humaneval'",
           "--gin.TASKS_FILE=None", "--gin.pipeline.PipelineConfig.num_tasks=3", "--gin.decoding.SamplingConfig.num_samples=2",
           "--gin.decoding.SamplingConfig.max_new_tokens=16", "--gin.TASK_FEATURE_LENGTHS={'inputs': 768}",
           "--gin.decoding.SamplingConfig.seed=11", "--gin.partitioning.Partitioner.axis_sizes={'data': 2, 'fsdp': 1, 'model': 1}",
           "--gin.decoding.SamplingConfig.batch_size=2", *extra]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_pipeline_runs_every_stage_resumes_and_refuses_a_changed_setting(tmp_path):
    model_dir = tmp_path / "run"
    proc = _run(model_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = read_all(str(model_dir / "data" / "tasks.jsonl"), RepairTask)
    assert 1 <= len(tasks) <= 3
    assert all(t.buggy_code != t.reference_fix and t.meta["bug_source"] == "mutation" for t in tasks)
    traced = read_all(str(model_dir / "data" / "traced.jsonl"), TracedTask)
    assert [t.task_id for t in traced] == [t.task_id for t in tasks]
    assert all(len(t.traces) == len(t.tests) for t in traced)
    assert any(tr.outcome != "pass" for t in traced for tr in t.traces)  # the injected bug shows
    eval_dir = model_dir / "iteration_0" / "eval"
    samples = read_all(str(eval_dir / "trace.samples.jsonl"), Sample)
    assert len(samples) == 2 * len(tasks)
    assert len({s.sample_id for s in samples}) == len(samples) and all(s.seed is not None for s in samples)
    verdicts = read_all(str(eval_dir / "trace.verdicts.jsonl"), Verdict)
    assert [v.sample_id for v in verdicts] == [s.sample_id for s in samples]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["samples"] == len(samples) and metrics["tasks"] == len(tasks)
    assert metrics["reference_fixes_passing"] == metrics["reference_fixes"] == len(tasks)
    assert "pass@1" in metrics and "pass@5" not in metrics  # k above the sample count is left out
    assert "num_tasks = 3" in (model_dir / "config.gin").read_text()
    for stage in ("data", "iteration_0/eval"):
        manifest = json.loads((model_dir / stage / "manifest.json").read_text())
        assert manifest["status"] == "done", stage
    assert (model_dir / "report.md").exists()

    # A second run finds every stage done and reproduces the same metrics without redoing work.
    before = (eval_dir / "trace.samples.jsonl").stat().st_mtime_ns
    proc = _run(model_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (eval_dir / "trace.samples.jsonl").stat().st_mtime_ns == before
    assert json.loads((model_dir / "metrics.json").read_text())["pass@1"] == metrics["pass@1"]

    # Another temperature under the same MODEL_DIR is refused, naming the setting.
    proc = _run(model_dir, "--gin.decoding.SamplingConfig.temperature=0.5")
    assert proc.returncode != 0
    assert "evaluation.sampling.temperature: 0.8 -> 0.5" in proc.stderr

    # The flat sampler names of before the settings object are gone, and say so.
    proc = _run(tmp_path / "old_names", "--gin.NUM_SAMPLES=2")
    assert proc.returncode == 2 and "no gin file of this run defines or reads a macro named NUM_SAMPLES" in proc.stderr
    proc = _run(tmp_path / "old_names", "--gin.pipeline.run_pipeline.temperature=0.5")
    assert proc.returncode == 2 and "temperature" in proc.stderr

    # Already traced tasks (a built dataset) are evaluated as they are, not traced again.
    other = tmp_path / "from_traced"
    proc = _run(other, "--gin.pipeline.PipelineConfig.tasks_format='traced_tasks'", f"--gin.TASKS_FILE='{model_dir}/data/traced.jsonl'")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (other / "data" / "traced.jsonl").read_text() == (model_dir / "data" / "traced.jsonl").read_text()
    assert json.loads((other / "metrics.json").read_text())["samples"] == len(samples)
