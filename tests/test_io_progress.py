"""The path layer (local and TensorFlow's in-memory ram:// filesystem) and the progress reporter."""

import os

import pytest

from next_jax import io as nj_io
from next_jax import progress


@pytest.mark.parametrize("remote", [False, True])
def test_atomic_write_replaces_only_on_success(tmp_path, remote):
    root = "ram://io_test_%d" % os.getpid() if remote else str(tmp_path)
    path = nj_io.join(root, "sub", "a.txt")
    nj_io.write_text(path, "first")
    assert nj_io.read_text(path) == "first"
    with pytest.raises(RuntimeError):
        with nj_io.atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("boom")
    assert nj_io.read_text(path) == "first"
    assert [n for n in nj_io.listdir(nj_io.join(root, "sub"))] == ["a.txt"]
    nj_io.write_bytes(path, b"second")
    assert nj_io.read_bytes(path) == b"second"
    assert nj_io.exists(path) and nj_io.isdir(nj_io.join(root, "sub"))
    assert nj_io.glob(nj_io.join(root, "sub", "*.txt")) == [path]
    nj_io.rmtree(root)
    assert not nj_io.exists(path)


def test_remote_paths_never_touch_local_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nj_io.write_text("ram://io_local_check/x.txt", "x")
    assert os.listdir(tmp_path) == []
    assert nj_io.dirname("gs://bucket/run/x.txt") == "gs://bucket/run"
    assert nj_io.basename("gs://bucket/run/") == "run"


@pytest.mark.parametrize("remote", [False, True])
def test_record_writer_is_the_atomic_writer_on_any_filesystem(tmp_path, remote):
    from next_jax.data.records import AtomicWriter, Verdict, read_all, write_records

    root = "ram://io_records_%d" % os.getpid() if remote else str(tmp_path)
    path = nj_io.join(root, "out", "v.jsonl")
    verdicts = [Verdict(task_id="t", sample_id=f"t/{i}", status="pass", tests_passed=1, tests_total=1)
                for i in range(3)]
    assert write_records(path, verdicts) == 3
    assert read_all(path, Verdict) == verdicts
    with pytest.raises(RuntimeError):
        with AtomicWriter(path) as writer:
            writer.write(verdicts[0])
            raise RuntimeError("killed mid-file")
    assert read_all(path, Verdict) == verdicts  # the old content, and no temporary file beside it
    assert nj_io.listdir(nj_io.join(root, "out")) == ["v.jsonl"]
    nj_io.rmtree(root)


def test_paths_that_must_be_local_say_so():
    from next_jax.models import safetensors_io

    assert nj_io.absolute("gs://bucket/run") == "gs://bucket/run"
    assert nj_io.absolute("run") == os.path.join(os.getcwd(), "run")
    with pytest.raises(ValueError, match=r"Hugging Face checkpoint directory 'gs://bucket/qwen' must be a local "
                                         r"path: its safetensors files are memory-mapped"):
        safetensors_io.CheckpointReader("gs://bucket/qwen")


def test_progress_reports_rate_and_eta():
    now = [0.0]
    lines = []
    p = progress.Progress("trace", total=100, unit="tasks", every_s=5, log=lines.append, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 1.0
        p.update(2, failures=1)
    assert len(lines) == 2  # at t=5 and t=10
    assert lines[-1].startswith("trace: 20/100 tasks (20.0%), 2 tasks/s, ETA 40s")
    assert "failures=1" in lines[-1]
    final = p.finish()
    assert final == lines[-1] and len(lines) == 3
    assert progress.format_seconds(3725) == "1h02m"


def test_gin_files_may_live_on_another_filesystem(tmp_path):
    import gin

    from next_jax import main

    nj_io.write_text("ram://gin_files/run.gin", "include 'runs/infer.gin'\nMODEL_DIR = 'ram://gin_files/out'\n")
    gin.clear_config()
    try:
        main.parse_gin(["ram://gin_files/run.gin", "models/tiny.gin"],
                       ["TASK_NAME = 'x'", "TASK_FEATURE_LENGTHS = {'inputs': 8}"], [], "infer")
        assert main.model_dir_from_gin() == "ram://gin_files/out"
    finally:
        gin.clear_config()
        nj_io.rmtree("ram://gin_files")
