"""The path layer (local and TensorFlow's in-memory ram:// filesystem) and the progress reporter."""

import os

import pytest

from next_jax import io, progress


@pytest.mark.parametrize("remote", [False, True])
def test_atomic_write_replaces_only_on_success(tmp_path, remote):
    root = "ram://io_test_%d" % os.getpid() if remote else str(tmp_path)
    path = io.join(root, "sub", "a.txt")
    io.write_text(path, "first")
    assert io.read_text(path) == "first"
    with pytest.raises(RuntimeError):
        with io.atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("boom")
    assert io.read_text(path) == "first"
    assert [n for n in io.listdir(io.join(root, "sub"))] == ["a.txt"]
    io.write_bytes(path, b"second")
    assert io.read_bytes(path) == b"second"
    assert io.exists(path) and io.isdir(io.join(root, "sub"))
    assert io.glob(io.join(root, "sub", "*.txt")) == [path]
    io.rmtree(root)
    assert not io.exists(path)


def test_remote_paths_never_touch_local_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    io.write_text("ram://io_local_check/x.txt", "x")
    assert os.listdir(tmp_path) == []
    assert io.dirname("gs://bucket/run/x.txt") == "gs://bucket/run"
    assert io.basename("gs://bucket/run/") == "run"


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
