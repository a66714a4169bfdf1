"""Kill anywhere, rerun, same result: the loop is SIGKILLed inside each of its stages in turn
(selection sampling, sampling, checking, building B(i), fine-tuning, evaluation), restarted each
time, and must end exactly where an uninterrupted run ends: the same samples, verdicts, B(i),
fine-tuned model (its dev samples are the same text) and dev pass@1, with no sample lost or
counted twice."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from next_jax.data.records import Sample, Verdict, read_all
from tests import REPO


DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, {repo!r})
    from tests.selftrain import fixtures as fx
    from next_jax import selftrain
    from next_jax.data import records
    from next_jax.evaluation.repair import EvalConfig
    from next_jax.evaluation.runs import ExecutionConfig, SamplingConfig
    from next_jax.execution.checker import CheckConfig
    from next_jax.models import ModelRef

    kill_at = os.environ.get("KILL_AT")
    if kill_at:  # SIGKILL this process right after the Nth matching file (or checkpoint) is written
        pattern, count = kill_at.rsplit(":", 1)
        seen = [0]
        close = records.AtomicWriter.close

        def killing_close(self):
            close(self)
            if pattern in self.path:
                seen[0] += 1
                if seen[0] >= int(count):
                    os.kill(os.getpid(), signal.SIGKILL)

        records.AtomicWriter.close = killing_close
        if pattern == "finetune":
            from next_jax import checkpoints
            save = checkpoints.Checkpointer.save

            def killing_save(self, step, *args, **kwargs):
                out = save(self, step, *args, **kwargs)
                if step >= int(count):
                    self.wait()
                    os.kill(os.getpid(), signal.SIGKILL)
                return out

            checkpoints.Checkpointer.save = killing_save

    work = sys.argv[1]
    sampling = SamplingConfig(num_samples=4, max_new_tokens=8, batch_size=8, chunk_size=2)
    result = selftrain.run_next(selftrain.NextConfig(
        model_dir=os.path.join(work, sys.argv[2]),
        model=ModelRef(model=fx.tiny_config(), vocabulary=fx.vocabulary(), checkpoint=os.path.join(work, "base"),
                       task_feature_lengths={{"inputs": 160, "targets": 16}}),
        files=selftrain.FilesConfig(train_file=os.path.join(work, "train.jsonl"),
                                    dev_file=os.path.join(work, "dev.jsonl")),
        num_iterations=1, answer_format="test_oracle",
        selection=selftrain.SelectionConfig(threshold=0.5, sampling=sampling), sampling=sampling,
        finetune=selftrain.FinetuneConfig(num_steps=3, batch_size=8, checkpoint_period=1),
        evaluation=EvalConfig(sampling=sampling, variants=("trace",), greedy=False, ks=(1, 2)),
        execution=ExecutionConfig(workers=2, check=CheckConfig(test_timeout_s=2.0), chunk_size=5)))
    print("RESULT " + json.dumps(result["dev_pass_at_1"]))
""")

# (what to kill after: a file path fragment or 'finetune' for a checkpoint, how many; the stage)
KILL_POINTS = [
    ("iteration_0/select/samples.raw.chunks:1", "iteration_0/select"),
    ("iteration_0/sample/samples.raw.chunks:2", "iteration_0/sample"),
    ("iteration_0/check/verdicts.jsonl.chunks:1", "iteration_0/check"),
    ("iteration_0/build/b.jsonl:1", "iteration_0/build"),
    ("finetune:1", "iteration_0/finetune"),
    ("iteration_1/eval/trace.samples.raw.chunks:1", "iteration_1/eval"),
]


def _run(work, name, kill_at=None):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    env.pop("KILL_AT", None)
    if kill_at:
        env["KILL_AT"] = kill_at
    script = os.path.join(work, "driver.py")
    return subprocess.run([sys.executable, script, work, name], env=env, capture_output=True, text=True,
                          timeout=900)


def _files(run):
    samples = read_all(os.path.join(run, "iteration_0/sample/samples.jsonl"), Sample)
    verdicts = read_all(os.path.join(run, "iteration_0/check/verdicts.jsonl"), Verdict)
    b = read_all(os.path.join(run, "iteration_0/build/b.jsonl"), Sample)
    dev = read_all(os.path.join(run, "iteration_1/eval/trace.samples.jsonl"), Sample)
    return {
        "samples": [(s.sample_id, s.text, s.seed) for s in samples],
        "verdicts": [(v.sample_id, v.status) for v in verdicts],
        "b": [(s.sample_id, s.text) for s in b],
        "dev_after_finetune": [(s.sample_id, s.text) for s in dev],
    }


@pytest.mark.slow
def test_sigkill_in_every_stage_then_rerun_gives_the_uninterrupted_result(tmp_path):
    from tests.selftrain import fixtures as fx

    work = str(tmp_path)
    fx.write_tasks(os.path.join(work, "train.jsonl"), "train", 6)
    fx.write_tasks(os.path.join(work, "dev.jsonl"), "dev", 3)
    fx.save_base_checkpoint(os.path.join(work, "base"), fx.tiny_config())
    with open(os.path.join(work, "driver.py"), "w") as f:
        f.write(DRIVER.format(repo=REPO))

    clean = _run(work, "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    for kill_at, stage in KILL_POINTS:
        killed = _run(work, "killed", kill_at)
        assert killed.returncode == -9, (kill_at, killed.returncode, killed.stderr[-3000:])
        with open(os.path.join(work, "killed", stage, "manifest.json")) as f:
            assert json.load(f)["status"] == "running", kill_at  # the kill landed inside the stage
    resumed = _run(work, "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    result = lambda proc: [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")][-1]  # noqa: E731
    assert result(resumed) == result(clean)
    clean_files, resumed_files = _files(os.path.join(work, "clean")), _files(os.path.join(work, "killed"))
    assert clean_files["b"] and any(status == "pass" for _, status in clean_files["verdicts"])  # not vacuous
    assert len({sid for sid, _, _ in resumed_files["samples"]}) == len(resumed_files["samples"])
    for key in clean_files:
        assert resumed_files[key] == clean_files[key], key
    ft = json.loads(open(os.path.join(work, "killed", "iteration_0/finetune/manifest.json")).read())
    assert ft["attempts"] == 2 and ft["result"]["num_steps"] == 3  # resumed, not restarted from scratch
