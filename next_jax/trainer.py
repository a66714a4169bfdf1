"""Pure training and evaluation steps, compiled once with shardings, and the host loop around them.

``Trainer`` holds the model (a ``DecoderLM``), the optimizer and the partitioner, and builds:

- ``init_state(seed)`` / ``state_from_params(params)``: a TrainState created directly in its
  shards (layout from ``train_state.abstract_state``);
- ``train_step(state, batch) -> (state, metrics)``: gradient of the target-token loss, optionally
  accumulated over ``num_microbatches`` slices of the batch (a ``lax.scan``: the gradient equals
  the whole batch's), clipping and update by the optimizer; jitted with the state's shardings and
  the state buffers donated, so parameters and moments are updated in place;

``train_loop`` is the host side: it feeds batches, keeps each step's metrics on the device and
fetches them once per summary period (one host sync per period, not per step), writes them with
clu, saves checkpoints (period, preemption, final), and stops on a NaN loss naming the step and the
last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Iterator, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from next_jax import io as nj_io
from next_jax import partitioning, train_state
from next_jax.errors import UserError
from next_jax.models import lm as lm_lib
from next_jax.optimizers import Optimizer

BATCH_AXES = ("batch", "length")


class NaNLossError(UserError, FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


def _batch_axes(leaf) -> tuple:
    return (BATCH_AXES + (None,) * np.ndim(leaf))[: np.ndim(leaf)]


class Trainer:
    """Compiled steps for one model, optimizer and mesh."""

    def __init__(self, model: lm_lib.DecoderLM, optimizer: Optimizer, partitioner: partitioning.Partitioner, *,
                 num_microbatches: int = 1, seed: int = 0):
        if num_microbatches < 1:
            raise ValueError(f"num_microbatches must be >= 1, got {num_microbatches}")
        self.model = model
        self.optimizer = optimizer
        self.partitioner = partitioner
        self.num_microbatches = num_microbatches
        self.seed = seed
        self.abstract_state, self.state_shardings, self.params_logical = train_state.abstract_state(
            model.init_fn, optimizer.tx, partitioner
        )
        self._train_step = partitioner.jit(
            self._step, in_shardings=(self.state_shardings, None), out_shardings=(self.state_shardings, None),
            donate_argnums=(0,),
        )
        self._compiled = {}
        self.compile_seconds = 0.0

    # -- states -----------------------------------------------------------------------------

    def init_state(self, seed: Optional[int] = None) -> train_state.TrainState:
        """A fresh state: random parameters from ``seed`` (default: the trainer's), zero moments."""
        tx, init_fn = self.optimizer.tx, self.model.init_fn
        create = self.partitioner.jit(
            lambda rng: train_state.TrainState.create(nn.unbox(init_fn(rng))["params"], tx),
            out_shardings=self.state_shardings,
        )
        return create(jax.random.key(self.seed if seed is None else seed))

    def state_from_params(self, params) -> train_state.TrainState:
        """A fresh optimizer state around given parameters (fine-tuning from a checkpoint)."""
        tx = self.optimizer.tx
        create = self.partitioner.jit(
            lambda p: train_state.TrainState.create(p, tx),
            in_shardings=(self.state_shardings.params,), out_shardings=self.state_shardings,
        )
        return create(params)

    # -- steps ------------------------------------------------------------------------------

    def _step(self, state: train_state.TrainState, batch: Mapping[str, jax.Array]):
        rng = jax.random.fold_in(jax.random.key(self.seed), state.step)
        *_, weights = lm_lib.next_token_targets(batch)
        normalizer = jnp.maximum(jnp.sum(weights), 1.0)
        grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
        m = self.num_microbatches
        if m == 1:
            (_, sums), grads = grad_fn(state.params, batch, rng, normalizer)
        else:
            def split(x):
                x = x.reshape((m, x.shape[0] // m) + x.shape[1:])
                return nn.with_logical_constraint(x, (None,) + _batch_axes(x[0]))

            micro = jax.tree.map(split, batch)

            def body(carry, inputs):
                grads_acc, sums_acc = carry
                index, mb = inputs
                (_, sums), grads = grad_fn(state.params, mb, jax.random.fold_in(rng, index), normalizer)
                grads_acc = jax.tree.map(lambda a, g: a + g.astype(a.dtype), grads_acc, grads)
                return (grads_acc, jax.tree.map(jnp.add, sums_acc, sums)), None

            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
            zero_sums = {k: jnp.zeros((), jnp.float32) for k in lm_lib.METRIC_SUMS}
            (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums), (jnp.arange(m), micro))
            grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
        metrics = lm_lib.summarize(sums)
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["learning_rate"] = jnp.asarray(self.optimizer.learning_rate(state.step), jnp.float32)
        return state.apply_gradients(grads, self.optimizer.tx), metrics

    def _check_batch(self, batch) -> None:
        m = self.num_microbatches
        shards = self.partitioner.num_batch_shards
        for name, leaf in batch.items():
            rows = np.shape(leaf)[0]
            if rows % (m * shards):
                raise ValueError(
                    f"batch feature {name!r} has {rows} rows, not a multiple of num_microbatches={m} x "
                    f"{shards} data-parallel devices of mesh {dict(self.partitioner.mesh.shape)}"
                )

    def global_batch(self, local_batch: Mapping[str, np.ndarray]):
        return self.partitioner.global_batch(dict(local_batch), {k: _batch_axes(v) for k, v in local_batch.items()})

    def train_step(self, state, batch):
        """One update; compiles on first use (the time is kept in ``compile_seconds``)."""
        key = ("train",) + tuple((k, v.shape) for k, v in sorted(batch.items()))
        if key not in self._compiled:
            self._check_batch(batch)
            start = time.monotonic()
            self._compiled[key] = self._train_step.lower(state, batch).compile()
            self.compile_seconds += time.monotonic() - start
        return self._compiled[key](state, batch)



# ---------------------------------------------------------------------------------------------
# Host loop.


def matmul_peak_flops(dtype: str = "float32", size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a square matmul on the default backend (the MFU denominator when none is given)."""
    dtype = jnp.dtype(dtype)
    a = jnp.ones((size, size), dtype)
    f = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    f(a, a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


@dataclasses.dataclass
class LoopResult:
    step: int
    metrics: dict
    checkpoint: Optional[str]


def _to_host(metrics_list) -> dict:
    """Means over the period of each step's metrics (one device->host transfer)."""
    fetched = jax.device_get(metrics_list)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def train_loop(
    trainer: Trainer,
    state,
    batches: Iterator[Mapping[str, np.ndarray]],
    *,
    start_step: int,
    total_steps: int,
    input_position: Callable[[], dict],
    checkpointer=None,
    writer=None,
    summary_period: int = 100,
    eval_fn: Optional[Callable[[Any, int], dict]] = None,
    eval_period: int = 0,
    flops_per_token: float = 0.0,
    peak_flops: Optional[float] = None,
    tokens_per_batch: int = 0,
) -> LoopResult:
    """Runs steps ``start_step + 1 .. total_steps``; returns the final step, metrics and checkpoint."""
    from clu import periodic_actions  # deferred: it imports TensorFlow (through clu's metric writers)

    summary_period = max(int(summary_period), 1)
    pending, last = [], {}
    period_start = time.monotonic()
    period_first = start_step
    # clu's progress report: steps/s, % done and ETA in the log every 30 s and at the end,
    # steps_per_sec and uptime to TensorBoard, and the share of time in checkpoints and evals.
    progress = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer, every_secs=30.0)
    step = start_step
    first_summary = True

    def last_good() -> str:
        saved = checkpointer.last_saved if checkpointer else None
        return checkpointer.step_path(saved) if saved is not None else "none"

    def check_finite(values: dict, at_step: int) -> None:
        loss = values.get("loss", 0.0)
        if not math.isfinite(loss):
            raise NaNLossError(
                f"loss is {loss} at step {at_step}; stopping. Last good checkpoint: {last_good()} "
                "(lower the learning rate, enable clipping, or check the data, then resume from it)"
            )

    def flush(at_step: int) -> dict:
        nonlocal pending, period_start, period_first, first_summary
        values = _to_host(pending)
        check_finite(values, at_step)
        elapsed = max(time.monotonic() - period_start, 1e-9)
        steps = at_step - period_first
        values["step_time_s"] = elapsed / max(steps, 1)
        if tokens_per_batch:
            values["tokens_per_s"] = tokens_per_batch * steps / elapsed
            if flops_per_token and peak_flops:
                values["mfu"] = flops_per_token * values["tokens_per_s"] / peak_flops
        if first_summary:
            values["compile_time_s"] = trainer.compile_seconds
            first_summary = False
        if checkpointer is not None:
            values["checkpoint_time_s"] = checkpointer.save_seconds
        if writer is not None:
            writer.write_scalars(at_step, values)
        pending, period_start, period_first = [], time.monotonic(), at_step
        return values

    while step < total_steps:
        batch = trainer.global_batch(next(batches))
        state, metrics = trainer.train_step(state, batch)
        step += 1
        pending.append(metrics)
        progress(step)
        if step % summary_period == 0 or step == total_steps:
            last = flush(step)
        preempted = checkpointer is not None and checkpointer.preempted(step)
        if checkpointer is not None and (checkpointer.due(step) or step == total_steps or preempted):
            if pending:  # never save parameters that a NaN step produced
                check_finite(_to_host(pending[-1:]), step)
            with progress.timed("checkpoint", wait_jax_async_dispatch=False):
                checkpointer.save(step, state, input_position(), last)
        if eval_fn is not None and eval_period and (step % eval_period == 0 or step == total_steps):
            with progress.timed("eval", wait_jax_async_dispatch=False):
                eval_fn(state.params, step)
        if preempted:
            logging.warning("train: preempted at step %d; checkpoint %s", step, last_good())
            break
    if writer is not None:
        writer.flush()
    if checkpointer is not None:
        checkpointer.wait()
    checkpoint = checkpointer.step_path(checkpointer.last_saved) if checkpointer and checkpointer.last_saved else None
    return LoopResult(step=step, metrics=last, checkpoint=checkpoint)


def metric_writer(model_dir: str, name: str):
    """clu writer for TensorBoard event files under MODEL_DIR/name (host 0 writes, others log)."""
    from clu import metric_writers  # deferred: its summary writer imports TensorFlow

    writers = [metric_writers.LoggingWriter()]
    if jax.process_index() == 0:
        # Built directly rather than by create_default_writer, whose epath paths know no ram://.
        writers.append(metric_writers.SummaryWriter(nj_io.join(model_dir, name)))
    return metric_writers.AsyncMultiWriter(writers)


def tensorboard_run(checkpoint: Optional[str]) -> str:
    """The TensorBoard run (directory under MODEL_DIR) of a standalone evaluation.

    Apart from the in-training evaluation's ``eval`` (the training state as it trains): the run's
    saved checkpoints are scored under ``eval_checkpoints`` at their own steps, one explicit
    checkpoint under ``eval_checkpoint_<its name>`` at step 0. Each step also records, as text, the
    checkpoint path and the data scored.
    """
    if checkpoint is None:
        return "eval_checkpoints"
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in nj_io.basename(str(checkpoint).rstrip("/")))
    return f"eval_checkpoint_{name or 'root'}"
