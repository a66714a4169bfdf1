"""Training checkpoints: the one module that knows their layout on disk.

A run's checkpoints live in ``MODEL_DIR/checkpoints/<step>/`` (an orbax ``CheckpointManager``),
each step holding three items:

- ``state``: the TrainState (step, params, opt_state), saved sharded (every host writes its own
  shards) and restorable onto another mesh: the restore target's shardings decide the layout;
- ``input``: JSON, the input pipeline position (batches consumed and the data seed), so a
  resumed run sees exactly the batches it would have seen;
- ``summary``: JSON, the step's metrics, so a finished run can be asked for its result again.

Saves are asynchronous (training continues while the arrays are written), at most ``keep`` are
kept, and a preemption (orbax's multi-host notice, or SIGTERM to this process) is answered with a
save at the next step. ``restore_params`` reads only the parameters, from a run directory, a step
directory or a bare pytree checkpoint, for sampling, evaluation or fine-tuning from a checkpoint.

A crash or preemption in the middle of a save can leave the newest step incomplete (truncated or
empty array files, missing metadata). Resuming (:meth:`Checkpointer.restore_latest`) and reading a
run's parameters (:func:`restore_params` on a run directory) therefore take the newest step that
reads back whole, with a warning that names each step skipped and why; a skipped step is never
deleted (training that will save that step again first moves it aside, to
``<step>.unreadable-<time>``).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any, Optional, Tuple

from absl import logging

from next_jax import io as nj_io
from next_jax.errors import UserFileNotFoundError, UserValueError, one_line
from next_jax.models import stacking

STATE, INPUT, SUMMARY = "state", "input", "summary"
SUBDIR = "checkpoints"


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """When and how training saves.

    Attributes:
      period: save every ``period`` steps (0 = only the final save and preemption saves).
      keep: how many checkpoints to keep (None = all).
      async_save: write in the background while training continues.
      enabled: False turns saving and resuming off (e.g. a throwaway run on a filesystem orbax
        cannot write).
    """

    period: int = 1000
    keep: Optional[int] = 3
    async_save: bool = True
    enabled: bool = True

    def __post_init__(self):
        if self.period < 0:
            raise ValueError(f"CheckpointConfig.period must be >= 0, got {self.period}")
        if self.keep is not None and self.keep < 1:
            raise ValueError(f"CheckpointConfig.keep must be None or >= 1, got {self.keep}")


def checkpoint_dir(model_dir: str) -> str:
    return nj_io.join(model_dir, SUBDIR)


class _SigtermFlag:
    """Records SIGTERM (how a preempted VM or a scheduler stops a process) instead of dying."""

    def __init__(self):
        self.raised = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        logging.warning("SIGTERM received: saving a checkpoint at the next step, then stopping")
        self.raised = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class Checkpointer:
    """Saves and restores one run's train state, input position and metrics."""

    def __init__(self, model_dir: str, config: CheckpointConfig = CheckpointConfig()):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.config = config
        self.directory = checkpoint_dir(model_dir)
        self._sigterm = _SigtermFlag()
        self._manager = None
        if config.enabled:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=config.keep, save_interval_steps=1, create=True,
                    enable_async_checkpointing=config.async_save,
                ),
            )
        self.last_saved: Optional[int] = self.latest_step()
        self.save_seconds = 0.0

    def step_path(self, step: int) -> str:
        return nj_io.join(self.directory, str(int(step)))

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step() if self._manager else None

    def all_steps(self) -> list:
        return list(self._manager.all_steps()) if self._manager else []

    def preempted(self, step: int) -> bool:
        if self._sigterm.raised:
            return True
        return bool(self._manager and self._manager.reached_preemption(step))

    def due(self, step: int) -> bool:
        return bool(self.config.period) and step % self.config.period == 0

    def save(self, step: int, state, input_position: dict, metrics: Optional[dict] = None) -> bool:
        """Starts saving ``state`` at ``step`` (returns at once when asynchronous)."""
        if not self._manager or step == self.last_saved:
            return False
        ocp = self._ocp
        start = time.monotonic()
        self._manager.save(
            int(step),
            args=ocp.args.Composite(**{
                STATE: ocp.args.StandardSave(state),
                INPUT: ocp.args.JsonSave(dict(input_position)),
                SUMMARY: ocp.args.JsonSave({"step": int(step), "metrics": dict(metrics or {})}),
            }),
            force=True,
        )
        self.save_seconds = time.monotonic() - start
        self.last_saved = int(step)
        logging.info("checkpoint: saving step %d to %s (%.2fs blocking)", step, self.step_path(step), self.save_seconds)
        return True

    def restore(self, step: int, abstract_state) -> Tuple[Any, dict, dict]:
        """(state in ``abstract_state``'s shardings, input position, summary) of ``step``."""
        ocp = self._ocp
        out = {}

        def restore(target):
            out.update(self._manager.restore(
                int(step),
                args=ocp.args.Composite(**{
                    STATE: ocp.args.StandardRestore(target),
                    INPUT: ocp.args.JsonRestore(),
                    SUMMARY: ocp.args.JsonRestore(),
                }),
            ))
            return out[STATE]

        # A run may switch ModelConfig.scan_layers between restarts: parameters and the optimizer
        # moments that mirror them are converted to the layout of ``abstract_state``.
        saved = saved_tree(nj_io.join(self.step_path(step), STATE))
        state = stacking.restore_in_any_layout(saved, abstract_state, restore)
        return state, dict(out[INPUT]), dict(out[SUMMARY] or {})

    def restore_latest(self, abstract_state, *, set_aside: bool = False) -> Optional[Tuple[int, Any, dict, dict]]:
        """(step, state, input position, summary) of the newest step that reads back whole; None
        when there is no checkpoint.

        Each newer step that fails to restore is skipped with a warning naming it and the reason.
        ``set_aside`` (a run that will train past the restored step and save those steps again):
        skipped steps are moved to ``<step>.unreadable-<UTC time>`` beside the others, never deleted,
        so the new saves do not collide with them. If no step restores, the newest step's error is
        raised: every step failing means a mismatch (another model), not a crash mid-save.
        """
        steps = sorted(self.all_steps(), reverse=True)
        skipped, first_error = [], None
        if len(steps) > 1:
            quiet_abandoned_reads()
        for step in steps:
            try:
                state, position, summary = self.restore(step, abstract_state)
            except Exception as e:  # orbax/TensorStore raise ValueError, KeyError, JSONDecodeError, ...
                first_error = first_error or e
                skipped.append(step)
                continue
            for bad in skipped:
                self._report_unreadable(bad, step, first_error if bad == steps[0] else None, set_aside)
            if skipped and set_aside:
                self._manager.reload()
            self.last_saved = step
            return step, state, position, summary
        if first_error is not None:
            raise first_error
        return None

    def _report_unreadable(self, step: int, restored: int, error: Optional[BaseException], set_aside: bool):
        import jax

        path = self.step_path(step)
        reason = short_reason(error) if error is not None else "it does not restore either"
        kept = f"{path} is left in place"
        if set_aside:
            aside = f"{path}.unreadable-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            if jax.process_index() == 0:
                nj_io.rename(path, aside)
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices(f"checkpoint_set_aside_{step}")
            kept = f"moved to {aside}, not deleted"
        logging.warning("checkpoint step %d does not read back whole (%s); resuming from step %d instead; %s",
                        step, reason, restored, kept)

    def read_summary(self, step: int) -> dict:
        restored = self._manager.restore(int(step), args=self._ocp.args.Composite(**{SUMMARY: self._ocp.args.JsonRestore()}))
        return dict(restored[SUMMARY] or {})

    def wait(self) -> None:
        if self._manager:
            self._manager.wait_until_finished()

    def close(self) -> None:
        self._sigterm.restore()
        if self._manager:
            self._manager.wait_until_finished()
            self._manager.close()


# ---------------------------------------------------------------------------------------------
# Parameters only.


def _is_step_name(name: str) -> bool:
    return name.isdigit()


def step_dirs(path: str) -> list:
    """The step directories under ``path``, newest first, if it is a run's MODEL_DIR or its
    ``checkpoints/`` root; ``[]`` for a step directory or a bare pytree checkpoint."""
    if not nj_io.isdir(path):
        return []
    names = nj_io.listdir(path)
    if SUBDIR in names and not any(_is_step_name(n) for n in names):
        return step_dirs(nj_io.join(path, SUBDIR))
    steps = sorted((int(n) for n in names if _is_step_name(n) and nj_io.isdir(nj_io.join(path, n))), reverse=True)
    return [nj_io.join(path, str(step)) for step in steps]


def params_item_dir(path: str) -> str:
    """The pytree directory holding parameters under ``path``.

    ``path`` may be a run's MODEL_DIR (its latest checkpoint), a ``checkpoints/`` root, one step
    directory, or a bare pytree checkpoint (e.g. ``StandardCheckpointer().save(path, params)``).
    """
    if not nj_io.isdir(path):
        raise UserFileNotFoundError(f"checkpoint {path!r} is not a directory")
    steps = step_dirs(path)
    if steps:
        path = steps[0]
    names = nj_io.listdir(path)
    if STATE in names and nj_io.isdir(nj_io.join(path, STATE)):
        path = nj_io.join(path, STATE)
    if not nj_io.exists(nj_io.join(path, "_METADATA")):
        raise UserValueError(
            f"{path}: neither a Hugging Face checkpoint (config.json + *.safetensors) nor an orbax pytree "
            f"checkpoint (no {nj_io.join(path, '_METADATA')}); give a training MODEL_DIR, one of its step "
            "directories, or a pytree checkpoint"
        )
    return path


def quiet_abandoned_reads() -> None:
    """Before restores that may fall back to an older step: the reads a failed one leaves in flight
    print no tracebacks.

    When one array of a step fails to read, orbax stops waiting and closes its event loop while
    TensorStore still completes the step's other reads; each completion then finds the loop
    closed (``RuntimeError: Event loop is closed``, raised in a TensorStore thread), leaves a
    failed task nobody awaits (``Task exception was never retrieved``), or is an abandoned
    per-array read coroutine that raises its own read error again as it is closed; dozens of
    tracebacks after the one-line warning that already said which step was skipped and why. Only
    those three are dropped (installed before the first attempt: the first come while it is still
    failing); everything else is still reported.
    """
    import logging as std_logging
    import sys

    previous = sys.unraisablehook
    if not getattr(previous, "next_jax_abandoned_reads", False):
        def hook(unraisable):
            error = unraisable.exc_value
            if isinstance(error, RuntimeError) and str(error) == "Event loop is closed" and unraisable.object is None:
                return
            if getattr(unraisable.object, "__name__", None) == _ORBAX_ARRAY_READ and hasattr(unraisable.object, "cr_code"):
                return
            previous(unraisable)

        hook.next_jax_abandoned_reads = True
        sys.unraisablehook = hook
    asyncio_logger = std_logging.getLogger("asyncio")
    if _drop_unretrieved_task not in asyncio_logger.filters:
        asyncio_logger.addFilter(_drop_unretrieved_task)


# orbax's coroutine reading one array of a checkpoint (the reads a failed restore abandons)
_ORBAX_ARRAY_READ = "_read_array_index_and_device_put"


def _drop_unretrieved_task(record) -> bool:
    return not str(record.msg).startswith("Task exception was never retrieved")


def short_reason(error: BaseException, limit: int = 300) -> str:
    """An orbax/TensorStore error as one short line (their messages embed whole specs)."""
    text = f"{type(error).__name__}: {one_line(error)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def saved_tree(directory: str):
    """The structure of the pytree saved in ``directory`` (metadata per leaf, no array read)."""
    import orbax.checkpoint as ocp
    from etils import epath

    # The item handler, not a Checkpointer: an item directory (``<step>/state``) has no step-level
    # _CHECKPOINT_METADATA, which a Checkpointer looks for and warns about on every restore.
    metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(directory))
    tree = getattr(metadata, "item_metadata", metadata)
    return getattr(tree, "tree", tree)


def restore_params(path: str, abstract_params):
    """Restores only the parameters under ``path`` into ``abstract_params``' shapes and shardings.

    The saved tree is either the parameters themselves or a larger state with a top-level
    ``params`` entry (a TrainState); optimizer moments are never read. For a run directory, the
    newest step that reads back whole (skipped ones are named in a warning, and kept).
    """
    steps = step_dirs(path)
    if len(steps) < 2:
        return _restore_params(path, abstract_params)
    first_error = None
    quiet_abandoned_reads()
    for index, step_path in enumerate(steps):
        try:
            params = _restore_params(step_path, abstract_params)
        except Exception as e:
            first_error = first_error or e
            continue
        for bad in steps[:index]:
            reason = short_reason(first_error) if bad == steps[0] else "it does not restore either"
            logging.warning("checkpoint %s does not read back whole (%s); using %s instead; it is left in place",
                            bad, reason, step_path)
        return params
    raise first_error


def _restore_params(path: str, abstract_params):
    import orbax.checkpoint as ocp

    directory = nj_io.absolute(params_item_dir(path))
    checkpointer = ocp.PyTreeCheckpointer()
    tree = saved_tree(directory)
    wrapped = isinstance(tree, dict) and "params" in tree
    saved = tree["params"] if wrapped else tree

    def restore(params_target):
        target = {"params": params_target} if wrapped else params_target
        restored = checkpointer.restore(
            directory,
            args=ocp.args.PyTreeRestore(
                item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
            ),
        )
        return restored["params"] if wrapped else restored

    # Scanned and per-layer models read each other's checkpoints (ModelConfig.scan_layers).
    return stacking.restore_in_any_layout(saved, abstract_params, restore)
