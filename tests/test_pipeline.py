"""The pipeline entry function end to end, started the way users start it (main + gin)."""

import json
import os
import subprocess
import sys

from next_jax.data.records import RepairTask, Sample, TracedTask, Verdict, read_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(model_dir, *extra):
    cmd = [sys.executable, "-m", "next_jax.main", "--gin_file=gin_configs/experiments/cpu_demo.gin",
           f"--gin.MODEL_DIR='{model_dir}'", "--gin.NUM_TASKS=3", "--gin.NUM_SAMPLES=2",
           "--gin.MAX_NEW_TOKENS=16", "--gin.TASK_FEATURE_LENGTHS={'inputs': 768}", "--gin.RUN_SEED=11",
           "--gin.MESH_AXIS_SIZES={'data': 2, 'fsdp': 1, 'model': 1}", "--gin.BATCH_SIZE=2", *extra]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_cpu_demo_runs_every_stage_and_resumes(tmp_path):
    model_dir = tmp_path / "run"
    proc = _run(model_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = read_all(str(model_dir / "tasks.jsonl"), RepairTask)
    assert 1 <= len(tasks) <= 3
    assert all(t.buggy_code != t.reference_fix and t.meta["bug_source"] == "mutation" for t in tasks)
    traced = read_all(str(model_dir / "traced.jsonl"), TracedTask)
    assert [t.task_id for t in traced] == [t.task_id for t in tasks]
    assert all(len(t.traces) == len(t.tests) for t in traced)
    assert any(tr.outcome != "pass" for t in traced for tr in t.traces)  # the injected bug shows
    samples = read_all(str(model_dir / "iteration_0" / "samples.jsonl"), Sample)
    assert len(samples) == 2 * len(tasks)
    assert len({s.sample_id for s in samples}) == len(samples) and all(s.seed is not None for s in samples)
    verdicts = read_all(str(model_dir / "verdicts.jsonl"), Verdict)
    assert sorted(v.sample_id for v in verdicts) == sorted(s.sample_id for s in samples)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["samples"] == len(samples) and metrics["tasks"] == len(tasks)
    assert metrics["reference_fixes_passing"] == metrics["reference_fixes"] == len(tasks)
    assert "pass@1" in metrics and "NUM_TASKS = 3" in (model_dir / "config.gin").read_text()

    # A second run finds every stage done and reproduces the same metrics without redoing work.
    before = (model_dir / "iteration_0" / "samples.jsonl").stat().st_mtime_ns
    proc = _run(model_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (model_dir / "iteration_0" / "samples.jsonl").stat().st_mtime_ns == before
    assert json.loads((model_dir / "metrics.json").read_text())["pass@1"] == metrics["pass@1"]
