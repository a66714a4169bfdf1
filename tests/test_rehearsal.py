"""The dress rehearsal at real shapes (``next_jax.benchmarks.rehearsal``): the Qwen2.5-Coder 0.5B
architecture with random weights through one whole NExT iteration of the MBPP-R experiment file,
on real MBPP-R tasks, 2,048-token prompts and 512 new tokens. It takes about an hour on a 2-core
machine, so it is slow-marked and not part of CI; ``launch/run_tests.sh -m slow
tests/test_rehearsal.py`` runs it (the README gives its figures)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
STAGES = ("select", "eval", "sample", "check", "build", "finetune")


@pytest.mark.slow
def test_one_iteration_at_real_shapes_runs_every_stage_within_the_memory_formula(tmp_path):
    if not os.path.exists(os.path.join(DATA, "mbpp", "mbpp.jsonl")):
        pytest.skip(f"the MBPP files are not in {DATA} (README.md, section Data)")
    env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "next_jax.benchmarks.rehearsal", f"--work_dir={tmp_path}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=4 * 3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 480e6 < result["params"] < 500e6  # the 0.5B architecture, not a stand-in
    stages = result["stages"]
    for name in STAGES:
        assert f"iteration_0/{name}" in stages, sorted(stages)
    assert "iteration_1/eval" in stages
    # Real shapes went through: the prompts fill the 2,048-token budget and the answers reach 512
    # new tokens (a random model rarely emits its end token).
    config = (tmp_path / "run" / "config.gin").read_text()
    assert "'inputs': 2048, 'targets': 512" in config and "max_new_tokens = 512" in config
    from next_jax.data.records import Sample, read_all

    samples = read_all(str(tmp_path / "run" / "iteration_0" / "sample" / "samples.jsonl"), Sample)
    assert samples and max(len(s.text) for s in samples) > 512  # 512 tokens of at least one character
    # Fine-tuning holds the parameters, the AdamW moments and the gradients (16 bytes a parameter)
    # and one row's float32 logits with their gradient: at least the formula's state, and within
    # it plus what the process held before the loop and XLA's temporaries.
    finetune = stages["iteration_0/finetune"]["peak_rss_gb"]
    assert 16 * result["params"] / 1e9 < finetune < result["baseline_rss_gb"] + 1.5 * result["formula_train_gb"]
    assert result["dev_pass_at_1"] is not None
