"""A crash in the middle of a save: resume takes the newest step that reads back whole (real orbax),
warns naming the step skipped and why, and never deletes it."""

import gc
import glob
import logging
import os
import shutil
import sys

import jax
import numpy as np
import pytest

from next_jax import checkpoints
from next_jax.models import weights
from tests.test_checkpoints import CONFIG, _trainer


def _truncate_data(step_dir, fraction):
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    assert files
    for path in files:
        os.truncate(path, int(os.path.getsize(path) * fraction))


CORRUPTIONS = {
    "partial array files": lambda d: _truncate_data(d, 0.5),
    "zero-length array files": lambda d: _truncate_data(d, 0.0),
    "missing tree metadata": lambda d: os.remove(os.path.join(d, "state", "_METADATA")),
    "empty tree metadata": lambda d: os.truncate(os.path.join(d, "state", "_METADATA"), 0),
    "truncated array index": lambda d: os.truncate(os.path.join(d, "state", "manifest.ocdbt"), 10),
    "missing state item": lambda d: shutil.rmtree(os.path.join(d, "state")),
    "missing input position": lambda d: shutil.rmtree(os.path.join(d, "input")),
}


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """Steps 2 and 4 of a run, and the state at step 2."""
    root = tmp_path_factory.mktemp("recovery")
    trainer = _trainer({"data": 8})
    ckpt = checkpoints.Checkpointer(str(root), checkpoints.CheckpointConfig(period=2, keep=None))
    for step, seed in ((2, 0), (4, 1)):  # saved as training saves them; no step compiled
        ckpt.save(step, trainer.init_state(seed), {"batches": step}, {"loss": 1.0})
    ckpt.close()
    at_2 = jax.device_get(checkpoints.Checkpointer(str(root)).restore(2, trainer.abstract_state)[0])
    return root, trainer, at_2


def _copy(saved_run, tmp_path):
    root, trainer, at_2 = saved_run
    run = tmp_path / "run"
    shutil.copytree(root, run)
    return run, trainer, at_2


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.heavy
def test_resume_skips_a_corrupt_newest_step(saved_run, tmp_path, corruption, caplog):
    run, trainer, at_2 = _copy(saved_run, tmp_path)
    CORRUPTIONS[corruption](str(run / "checkpoints" / "4"))
    ckpt = checkpoints.Checkpointer(str(run), checkpoints.CheckpointConfig(period=2, keep=None))
    with caplog.at_level(logging.WARNING):
        step, state, position, summary = ckpt.restore_latest(trainer.abstract_state)
    assert step == 2 and summary["step"] == 2 and position == {"batches": 2}
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), at_2)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                 and "does not read back whole" in r.getMessage()]
    assert warning.startswith("checkpoint step 4 does not read back whole (") and "resuming from step 2" in warning
    assert "left in place" in warning and (run / "checkpoints" / "4").is_dir()  # never deleted
    ckpt.close()


def test_resume_sets_the_skipped_step_aside_and_saves_it_anew(saved_run, tmp_path, caplog):
    run, trainer, _ = _copy(saved_run, tmp_path)
    _truncate_data(str(run / "checkpoints" / "4"), 0.5)
    ckpt = checkpoints.Checkpointer(str(run), checkpoints.CheckpointConfig(period=2, keep=None))
    with caplog.at_level(logging.WARNING):
        step, state, _, _ = ckpt.restore_latest(trainer.abstract_state, set_aside=True)
    assert step == 2
    [aside] = glob.glob(str(run / "checkpoints" / "4.unreadable-*"))  # moved aside, not deleted
    assert any(f"moved to {aside}, not deleted" in r.getMessage() for r in caplog.records)
    assert ckpt.save(4, state, {"batches": 4})  # as the resumed run does when it reaches step 4 again
    ckpt.close()
    again = checkpoints.Checkpointer(str(run))
    assert again.restore_latest(trainer.abstract_state)[0] == 4  # the new step 4 reads back whole
    assert again.all_steps() == [2, 4]
    again.close()


def test_parameters_for_sampling_skip_a_corrupt_newest_step(saved_run, tmp_path, caplog):
    run, trainer, at_2 = _copy(saved_run, tmp_path)
    _truncate_data(str(run / "checkpoints" / "4"), 0.0)
    with caplog.at_level(logging.WARNING):
        params, _ = weights.load_params(str(run), CONFIG, trainer.partitioner)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), at_2.params)
    assert any(f"{run / 'checkpoints' / '4'} does not read back whole" in r.getMessage() for r in caplog.records)


def test_a_restore_that_fails_at_every_step_raises_the_newest_steps_error(saved_run, tmp_path):
    run, trainer, _ = _copy(saved_run, tmp_path)
    for step in ("2", "4"):
        os.remove(run / "checkpoints" / step / "state" / "_METADATA")
    ckpt = checkpoints.Checkpointer(str(run))
    with pytest.raises(Exception):
        ckpt.restore_latest(trainer.abstract_state)
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"]
    ckpt.close()


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_one_partial_array_file_leaves_no_traceback_of_abandoned_reads(saved_run, tmp_path, caplog, monkeypatch, fraction):
    run, trainer, at_2 = _copy(saved_run, tmp_path)
    first = sorted(glob.glob(str(run / "checkpoints" / "4" / "state" / "**" / "d" / "*"), recursive=True))[0]
    os.truncate(first, int(os.path.getsize(first) * fraction))  # one file of a save cut short; its siblings whole
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    with caplog.at_level(logging.WARNING):
        params, _ = weights.load_params(str(run), CONFIG, trainer.partitioner)
    gc.collect()
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), at_2.params)
    assert any("does not read back whole" in r.getMessage() for r in caplog.records)
    assert [(type(u.exc_value).__name__, str(u.exc_value)[:80], u.object) for u in reported] == []
