"""The self-training loop end to end on a tiny model: every stage with its manifest, B(i) made of
the accepted pairs only, a real fine-tune, the report (markdown, PNG, TensorBoard), a rerun that
redoes nothing, and a changed setting refused with its name."""

import dataclasses
import json
import os

import pytest

from tests.selftrain import fixtures as fx
from next_jax import selftrain
from next_jax.data.records import Sample, Verdict, read_all
from next_jax.evaluation.repair import EvalConfig, ProxyConfig
from next_jax.evaluation.runs import ExecutionConfig, SamplingConfig
from next_jax.execution.checker import CheckConfig
from next_jax.models import ModelRef

SAMPLING = SamplingConfig(num_samples=4, max_new_tokens=8, batch_size=8, chunk_size=4)


def _run(tmp_path, base, **overrides):
    kwargs = dict(
        model_dir=str(tmp_path / "run"),
        model=ModelRef(model=fx.tiny_config(), vocabulary=fx.vocabulary(), checkpoint=base,
                       task_feature_lengths={"inputs": 160, "targets": 16}),
        files=selftrain.FilesConfig(train_file=str(tmp_path / "train.jsonl"), dev_file=str(tmp_path / "dev.jsonl")),
        num_iterations=1, answer_format="test_oracle",
        selection=selftrain.SelectionConfig(threshold=0.5, sampling=SAMPLING), sampling=SAMPLING,
        finetune=selftrain.FinetuneConfig(num_steps=2, batch_size=8, checkpoint_period=1),
        evaluation=EvalConfig(sampling=SAMPLING, variants=("trace", "no_trace"), greedy=True, ks=(1, 2),
                                proxy=ProxyConfig(model=fx.tiny_config(), vocabulary=fx.vocabulary(),
                                                    checkpoint=base, sampling=SAMPLING.greedy())),
        execution=ExecutionConfig(workers=2, check=CheckConfig(test_timeout_s=2.0), chunk_size=8))
    kwargs.update(overrides)
    return selftrain.run_next(selftrain.NextConfig(**kwargs))


def _scalars(logdir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(logdir, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    return {tag: [e.step for e in acc.Tensors(tag)] for tag in tags["tensors"]} or \
        {tag: [e.step for e in acc.Scalars(tag)] for tag in tags["scalars"]}


@pytest.mark.slow
def test_one_iteration_end_to_end_then_resume_and_refuse_a_change(tmp_path):
    fx.write_tasks(str(tmp_path / "train.jsonl"), "train", 6)
    fx.write_tasks(str(tmp_path / "dev.jsonl"), "dev", 3)
    base = fx.save_base_checkpoint(str(tmp_path / "base"), fx.tiny_config())
    result = _run(tmp_path, base)
    run = tmp_path / "run"

    assert [row["iteration"] for row in result["iterations"]] == [0, 1]
    assert result["dev_pass_at_1"] == [row["dev"]["trace"]["pass@1"] for row in result["iterations"]]
    assert result["best_iteration"] == max(range(2), key=lambda i: (result["dev_pass_at_1"][i], -i))
    for stage in ("iteration_0/select", "iteration_0/eval", "iteration_0/sample", "iteration_0/check",
                  "iteration_0/build", "iteration_0/finetune", "iteration_1/eval"):
        assert json.loads((run / stage / "manifest.json").read_text())["status"] == "done", stage

    # D_H: the training tasks whose base pass@1 over 4 samples is below 0.5.
    rates = json.loads((run / "iteration_0/select/pass_rates.json").read_text())
    hard = {t["task_id"] for t in map(json.loads, (run / "iteration_0/select/hard.jsonl").read_text().splitlines())}
    assert hard == {t for t, (n, c) in rates.items() if c / n < 0.5} and result["selection"]["hard"] == len(hard)

    # B(0) holds exactly the passing samples from the hard problems, none lost or counted twice.
    samples = read_all(str(run / "iteration_0/sample/samples.jsonl"), Sample)
    verdicts = read_all(str(run / "iteration_0/check/verdicts.jsonl"), Verdict)
    assert len(samples) == 4 * len(hard) and [v.sample_id for v in verdicts] == [s.sample_id for s in samples]
    passing = [s.sample_id for s, v in zip(samples, verdicts) if v.passed]
    b = read_all(str(run / "iteration_0/build/b.jsonl"), Sample)
    assert [s.sample_id for s in b] == passing and passing
    row = result["iterations"][0]
    assert row["build"]["size"] == len(passing) and row["samples_passed"] == len(passing)
    assert row["build"]["coverage"] == len({s.task_id for s in b}) / len(hard)
    assert row["finetune"]["num_steps"] == 2 and result["iterations"][1]["checkpoint"].endswith("checkpoints/2")

    # Evaluation: both variants, greedy, and the proxy's pass@k over the sampled rationales.
    dev = row["dev"]
    assert dev["trace"]["samples"] == 12 and dev["no_trace"]["samples"] == 12
    assert set(dev["greedy"]) == {"trace", "no_trace"} and dev["proxy"]["rationales"] == 12

    # The report: markdown with every figure, the plot, TensorBoard scalars per iteration.
    report = (run / "report.md").read_text()
    for needle in ("|D_H|", "coverage", "\\|B(i)\\|", "accepted/problem", "no-trace pass@1", "proxy pass@1",
                   "greedy pass@1", "finetune", "Trace (first test)", "report.png"):
        assert needle in report, needle
    assert (run / "report.png").read_bytes().startswith(b"\x89PNG")
    scalars = _scalars(str(run / "next"))
    assert scalars["dev/trace/pass@1"] == [0, 1] and scalars["coverage"] == [0]
    for tag in ("dev/no_trace/pass@2", "dev/proxy/pass@1", "dev/greedy/trace", "b_size",
                "accepted_per_problem_mean", "hard_problems", "time_s/sample", "time_s/finetune"):
        assert tag in scalars, tag

    # Rerun: every stage is skipped and the result is the same.
    stamp = (run / "iteration_0/sample/samples.jsonl").stat().st_mtime_ns
    again = _run(tmp_path, base)
    assert again["dev_pass_at_1"] == result["dev_pass_at_1"] and again["iterations"][0]["build"] == row["build"]
    assert (run / "iteration_0/sample/samples.jsonl").stat().st_mtime_ns == stamp

    # A changed setting under the same MODEL_DIR is an error that names it.
    with pytest.raises(selftrain.SettingsChangedError, match=r"build\.dedup: 'none' -> 'fix'"):
        _run(tmp_path, base, build=selftrain.BuildConfig(dedup="fix"))


def test_run_file_binds_the_paper_defaults(tmp_path, monkeypatch):
    """runs/next.gin with a model file reaches run_next with every settings object built."""
    import gin

    from next_jax import main
    from next_jax.selftrain import loop

    class Reached(Exception):
        pass

    seen = {}

    def stop(ctx, runner, i, up):
        seen.update(ctx=ctx, selection=ctx.config.selection)
        raise Reached()

    monkeypatch.setattr(loop, "input_fingerprint", lambda path: path and "sha256:x")
    assert list(loop.STAGES)[0] == "select"
    monkeypatch.setattr(loop, "STAGES", dict(loop.STAGES, select=dataclasses.replace(loop.STAGES["select"], run=stop)))
    gin.clear_config()
    try:
        with pytest.raises(Reached):
            main.run("next", ["runs/next.gin", "models/tiny.gin"],
                     [f"MODEL_DIR = '{tmp_path}'", "TRAIN_FILE = 'train.jsonl'", "DEV_FILE = 'dev.jsonl'",
                      "TASK_FEATURE_LENGTHS = {'inputs': 256, 'targets': 64}"], [])
    finally:
        gin.clear_config()
    ctx, selection = seen["ctx"], seen["selection"]
    assert selection.threshold == 0.1 and selection.sampling.num_samples == 32
    assert selection.sampling.temperature == 0.8
    assert ctx.variant == "trace" and ctx.fmt.name == "fenced" and len(ctx.exemplars) == 3  # 3-shot base model
    assert ctx.execution.workers == 2


@pytest.mark.parametrize("name", ["qwen2_5_coder_1_5b_mbpp_r", "qwen2_5_coder_1_5b_hefix_plus",
                                  "qwen2_5_coder_7b_mbpp_r", "qwen2_5_coder_7b_hefix_plus"])
def test_real_model_experiments_parse_with_their_required_paths(name):
    import gin

    from next_jax import main

    bindings = ["HF_CHECKPOINT_DIR = '/ckpt/qwen'", "PROXY_CHECKPOINT_DIR = '/ckpt/qwen_small'",
                "TRAIN_FILE = '/data/mbpp_r/train-*-of-*.jsonl'", "DEV_FILE = '/data/mbpp_r/dev-*-of-*.jsonl'",
                "TEST_FILE = '/data/hefix_plus/test-*-of-*.jsonl'", "MODEL_DIR = '/tmp/x'"]
    if "7b" not in name:
        bindings.remove("PROXY_CHECKPOINT_DIR = '/ckpt/qwen_small'")
    if "hefix" not in name:
        bindings.remove("TEST_FILE = '/data/hefix_plus/test-*-of-*.jsonl'")
    gin.clear_config()
    try:
        main.parse_gin([f"experiments/{name}.gin"], bindings, [])
        assert gin.query_parameter("%RUN_MODE") == "next"
        assert str(gin.query_parameter("base/models.ModelRef.checkpoint")) == "%HF_CHECKPOINT_DIR"  # imported weights
        assert gin.query_parameter("%HF_CHECKPOINT_DIR") == "/ckpt/qwen"
        from next_jax.selftrain import loop, settings

        files = gin.get_configurable(loop.FilesConfig)()
        assert files.test_file == ("/data/hefix_plus/test-*-of-*.jsonl" if "hefix" in name else None)
        assert gin.get_configurable(settings.SelectionConfig)().threshold == 0.1
        from next_jax import decoding

        with gin.config_scope("sample"):  # N = 32 samples per hard problem, 512 new tokens
            sampling = gin.get_configurable(decoding.SamplingConfig)()
        assert (sampling.num_samples, sampling.max_new_tokens, sampling.batch_size) == (32, 512, 32)
        # 2,560-token rows fit as the README's memory estimate assumes (the rehearsal measures it).
        assert [gin.query_parameter(f"models.ModelConfig.{field}") for field in
                ("attention_impl", "remat_policy", "scan_layers")] == ["chunked", "full", True]
    finally:
        gin.clear_config()


def test_glob_task_files_are_concatenated_in_name_order(tmp_path):
    from next_jax.selftrain import loop

    (tmp_path / "train-00001-of-00002.jsonl").write_text('{"b": 1}\n')
    (tmp_path / "train-00000-of-00002.jsonl").write_text('{"a": 1}')
    out = loop._materialize(str(tmp_path / "run"), "train", str(tmp_path / "train-*-of-*.jsonl"))
    assert out == str(tmp_path / "run" / "data" / "train.jsonl")
    assert open(out).read() == '{"a": 1}\n{"b": 1}\n'
    assert loop._materialize(str(tmp_path / "run"), "dev", "dev.jsonl") == "dev.jsonl"
    with pytest.raises(FileNotFoundError, match="match nothing"):
        loop._materialize(str(tmp_path / "run"), "dev", str(tmp_path / "dev-*.jsonl"))


def test_manifests_record_what_the_model_computes_not_how_it_runs():
    import dataclasses

    from next_jax.selftrain import loop

    config = fx.tiny_config()
    record = loop.model_record(config)
    assert record["hidden_size"] == 32 and "remat_policy" not in record and "attention_impl" not in record
    assert loop.model_record(dataclasses.replace(config, remat_policy="full")) == record
    assert loop.model_record(dataclasses.replace(config, hidden_size=64)) != record
