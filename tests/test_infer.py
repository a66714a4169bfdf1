"""infer(): SeqIO task in, Sample records out; seeds, device counts, kill-and-resume, gin."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from next_jax import decoding, infer as infer_lib, partitioning
from next_jax.data.records import Sample, read_all
from next_jax.models.config import ModelConfig
from next_jax.models.ref import ModelRef

TASK = "test_infer_tiny"
NUM_EXAMPLES = 7
TINY = dict(vocab_size=264, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64)
HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_config():
    return ModelConfig(**TINY)


def register_tiny_task(records_path: str, name: str = TASK):
    """A SeqIO task over a JSON Lines file of {task_id, prompt}, byte-level vocabulary."""
    import seqio
    import tensorflow as tf

    def dataset_fn(split, shuffle_files, seed=None):
        with open(records_path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return tf.data.Dataset.from_tensor_slices(
            {"task_id": [r["task_id"] for r in rows], "inputs": [r["prompt"] for r in rows]}
        )

    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(dataset_fn, splits=["test"]),
        preprocessors=[seqio.preprocessors.tokenize],
        output_features={"inputs": seqio.Feature(seqio.ByteVocabulary(), add_eos=False)},
    )


def write_task_records(path: str, n: int = NUM_EXAMPLES):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            prompt = f"def f{i}(x):\n    return x {'+-*'[i % 3]} {i}\n" * (1 + i % 3)
            f.write(json.dumps({"task_id": f"Tiny/{i}", "prompt": prompt}) + "\n")


def run_infer(model_dir, partitioner=None, **overrides):
    import seqio

    sampler_fields = {f.name for f in dataclasses.fields(decoding.SamplingConfig)}
    sampling = dict(num_samples=3, temperature=1.0, top_k=20, top_p=0.95, max_new_tokens=12, batch_size=4,
                    chunk_size=4, seed=1234)
    sampling.update({k: v for k, v in overrides.items() if k in sampler_fields})
    if partitioner is None:
        partitioner = partitioning.Partitioner(partitioning.make_mesh({"data": 2, "fsdp": 2, "model": 2}))
    ref_fields = {f.name for f in dataclasses.fields(ModelRef)}
    ref = ModelRef(model=tiny_config(), vocabulary=seqio.ByteVocabulary(), task_feature_lengths={"inputs": 48},
                   partitioner=partitioner, **{k: v for k, v in overrides.items() if k in ref_fields})
    config = dict(model=ref, task_name=TASK, split="test", model_dir=str(model_dir), iteration=2,
                  prompt_variant="no_trace", sampling=decoding.SamplingConfig(**sampling))
    config.update({k: v for k, v in overrides.items() if k not in sampler_fields | ref_fields})
    return infer_lib.infer(infer_lib.InferConfig(**config))


def one_device():
    return partitioning.Partitioner(partitioning.make_mesh({"data": 1}, devices=jax.devices()[:1]))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "tasks.jsonl"
    write_task_records(str(path))
    register_tiny_task(str(path))
    return path


@pytest.fixture(scope="module")
def baseline(task, tmp_path_factory):
    """One run on the 8-device mesh that several tests compare against."""
    model_dir = tmp_path_factory.mktemp("baseline")
    final = run_infer(model_dir)
    return model_dir, final, read_all(final, Sample)


def _by_id(samples):
    return {s.sample_id: s for s in samples}


@pytest.mark.heavy
def test_writes_every_sample_once_with_its_seed(baseline, monkeypatch):
    model_dir, final, samples = baseline
    assert final == str(model_dir / "iteration_2" / f"samples.{TASK}.test.jsonl")
    assert len(samples) == NUM_EXAMPLES * 3 and len(_by_id(samples)) == len(samples)
    assert [s.task_id for s in samples[:4]] == ["Tiny/0"] * 3 + ["Tiny/1"]
    for s in samples:
        j = int(s.sample_id.rsplit("/", 1)[1])
        assert s.seed == decoding.derive_seed(1234, s.task_id, j)
        assert (s.iteration, s.prompt_variant, s.model) == (2, "no_trace", "random-init:0")
        assert s.logprob is not None and s.logprob <= 0
        assert s.fix is None and s.rationale == s.text.strip()  # random bytes hold no python block
    assert len({s.text for s in samples}) > NUM_EXAMPLES  # temperature 1: samples of a task differ
    manifest = json.loads((model_dir / "iteration_2" / f"samples.{TASK}.test.manifest.json").read_text())
    assert manifest["run_seed"] == 1234 and manifest["num_examples"] == NUM_EXAMPLES
    assert not os.path.exists(model_dir / "iteration_2" / f"samples.{TASK}.test.chunks")
    # Finished output: a second call returns it without sampling again ...
    monkeypatch.setattr(infer_lib._Sampler, "__call__", lambda *a: pytest.fail("sampled again"))
    assert run_infer(model_dir) == final
    # ... and one with other settings refuses to mix samples.
    with pytest.raises(ValueError, match=r"manifest.json: this output was started with other settings \(temperature: 1.0 -> 0.5\)"):
        run_infer(model_dir, temperature=0.5)


@pytest.mark.heavy
def test_samples_are_identical_on_one_and_eight_devices_and_reproduced_by_seed(tmp_path, baseline):
    eight = baseline[2]
    one = read_all(run_infer(tmp_path / "one", partitioner=one_device(), batch_size=3, chunk_size=5), Sample)
    assert [s.sample_id for s in one] == [s.sample_id for s in eight]
    assert [s.text for s in one] == [s.text for s in eight]
    assert [s.seed for s in one] == [s.seed for s in eight]
    np.testing.assert_allclose([s.logprob for s in one], [s.logprob for s in eight], rtol=1e-4, atol=1e-4)
    # Another run seed draws other samples.
    other = read_all(run_infer(tmp_path / "other", seed=99), Sample)
    assert sum(a.text != b.text for a, b in zip(other, eight)) > len(eight) // 2


@pytest.mark.heavy
def test_greedy_samples_of_a_prompt_agree(tmp_path, task):
    samples = read_all(run_infer(tmp_path / "greedy", temperature=0.0), Sample)
    for i in range(NUM_EXAMPLES):
        texts = {s.text for s in samples if s.task_id == f"Tiny/{i}"}
        assert len(texts) == 1


@pytest.mark.heavy
def test_random_run_seed_is_drawn_once_and_kept(tmp_path, task):
    final = run_infer(tmp_path / "r", seed=None, num_samples=1)
    manifest = json.loads(open(final.replace(".jsonl", ".manifest.json")).read())
    first = read_all(final, Sample)[0]
    assert first.seed == decoding.derive_seed(manifest["run_seed"], first.task_id, 0)


def test_bad_arguments_are_named(tmp_path, task):
    with pytest.raises(ValueError, match="batch_size=3 must be a multiple of the 4 data-parallel devices"):
        run_infer(tmp_path / "x", batch_size=3)
    with pytest.raises(ValueError, match="prompt_variant 'fancy'"):
        run_infer(tmp_path / "x", prompt_variant="fancy")


def test_long_prompts_keep_their_end(tmp_path, task):
    examples, truncated = infer_lib.read_examples(TASK, "test", {"inputs": 20})
    import seqio

    vocab = seqio.ByteVocabulary()
    full = [json.loads(line)["prompt"] for line in open(task)]
    assert truncated == sum(len(p.encode()) > 20 for p in full) > 0
    for example, prompt in zip(examples, full):
        assert vocab.decode(example.tokens.tolist()) == prompt[-20:]


KILLER = textwrap.dedent("""
    import os, signal, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, {here!r})
    import test_infer
    from next_jax.data import records

    # Die (SIGKILL: no cleanup, no finally) in the middle of writing the second chunk.
    original = records.AtomicWriter.write
    def write(self, record):
        if "chunk-00001" in self.path and self.count == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, record)
    records.AtomicWriter.write = write
    test_infer.register_tiny_task({task!r})
    test_infer.run_infer({model_dir!r})
""")


@pytest.mark.heavy
def test_resumes_after_a_kill_without_losing_or_duplicating_samples(tmp_path, task, baseline, monkeypatch):
    model_dir = tmp_path / "killed"
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(here=HERE, task=str(task), model_dir=str(model_dir)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    chunks = model_dir / "iteration_2" / f"samples.{TASK}.test.chunks"
    assert sorted(os.listdir(chunks))[0] == "chunk-00000.jsonl"
    assert any(name.endswith(".tmp") for name in os.listdir(chunks))  # the half-written chunk 1
    assert not os.path.exists(chunks / "chunk-00001.jsonl")

    calls = []
    original = infer_lib._Sampler.__call__
    monkeypatch.setattr(infer_lib._Sampler, "__call__", lambda self, b, s: calls.append(len(b)) or original(self, b, s))
    resumed = read_all(run_infer(model_dir), Sample)
    assert calls == [3]  # only the unfinished chunk (examples 4..6) was sampled again

    clean = baseline[2]  # the same run, never interrupted
    assert [s.to_dict() for s in resumed] == [s.to_dict() for s in clean]
    assert len(_by_id(resumed)) == NUM_EXAMPLES * 3


@pytest.mark.heavy
def test_gin_run_file_binds_infer(tmp_path, task):
    import gin

    model_gin = tmp_path / "tiny_model.gin"
    model_gin.write_text(
        "from __gin__ import dynamic_registration\n"
        "import seqio\n"
        "from next_jax import models\n"  # the name the gin files use: gin keeps the first one it meets
        "MODEL = @models.ModelConfig()\n"
        + "".join(f"models.ModelConfig.{k} = {v}\n" for k, v in TINY.items())
        + "VOCABULARY = @seqio.ByteVocabulary()\n"
    )
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(
            [os.path.join(HERE, "..", "gin_configs", "runs", "infer.gin"), str(model_gin)],
            [f"MODEL_DIR = '{tmp_path / 'gin'}'", f"TASK_NAME = '{TASK}'", "TASK_FEATURE_LENGTHS = {'inputs': 48}",
             "decoding.SamplingConfig.max_new_tokens = 12", "decoding.SamplingConfig.batch_size = 4",
             "decoding.SamplingConfig.seed = 5", "decoding.SamplingConfig.num_samples = 3",
             "partitioning.Partitioner.axis_sizes = {'data': 2, 'fsdp': 2, 'model': 2}"],
        )
        final = gin.get_configurable(infer_lib.infer)()
    finally:
        gin.clear_config()
    samples = read_all(final, Sample)
    assert len(samples) == NUM_EXAMPLES * 3 and samples[0].seed == decoding.derive_seed(5, "Tiny/0", 0)
