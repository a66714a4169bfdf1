r"""Evaluation of trained checkpoints: teacher-forced metrics and inference (sampling) metrics.

``evaluate(...)`` (``--run_mode=eval``) scores one checkpoint, the latest, or every checkpoint of
a MODEL_DIR and writes TensorBoard event files under ``MODEL_DIR/eval_checkpoints`` at each
checkpoint's step (``MODEL_DIR/eval`` is the in-training evaluation's; see ``trainer.tensorboard_run``)::

    python -m next_jax.main --run_mode=eval \
        --gin_file=gin_configs/experiments/train_tiny_cpu.gin --gin.MODEL_DIR=\"/tmp/train_tiny\"

Two kinds of evaluators, both ``evaluator(params, step) -> metrics`` (the trainer calls them too):

- :class:`TeacherForced`: loss and next-token accuracy on the targets of a split (unpacked rows,
  in order, padded to whole batches with zero-weight rows);
- :class:`InferenceEvaluator`: samples ``num_samples`` answers per prompt with next_jax's sampler
  and hands them to ``seqio.Evaluator``, which applies the task's own metric functions. The
  prediction is the first sample; every sample's text is passed as the aux value ``samples``, so
  a metric such as :func:`pass_at_k_metric` (with a judge that runs the fix in the executor)
  scores pass@k. Further evaluators (e.g. with/without trace prompts, proxy evaluation) plug in
  through ``CheckpointEvalConfig.evaluators``: any object with that call signature.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax
import numpy as np
from absl import logging

from next_jax import checkpoints, decoding, infer, inputs, partitioning
from next_jax import io as nj_io
from next_jax import trainer as trainer_lib
from next_jax.decoding import SamplingConfig
from next_jax.evaluation import metrics
from next_jax.errors import UserFileNotFoundError, UserValueError
from next_jax.models import lm as lm_lib
from next_jax.models import weights


def _pad_rows(batch: dict, rows: int) -> dict:
    have = next(iter(batch.values())).shape[0]
    if have == rows:
        return batch
    return {k: np.concatenate([v, np.zeros((rows - have,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}


class TeacherForced:
    """Target-token loss and accuracy of a split, as TrainState-independent sums over batches."""

    def __init__(self, model: lm_lib.DecoderLM, partitioner: partitioning.Partitioner, task_name: str,
                 task_feature_lengths: Mapping[str, int], *, split: str = "validation", batch_size: int = 8,
                 max_batches: Optional[int] = None, writer=None, prefix: str = ""):
        self.model, self.partitioner = model, partitioner
        self.task_name, self.task_feature_lengths, self.split = task_name, dict(task_feature_lengths), split
        self.shard_info, self.local_rows = inputs.host_shard(partitioner, batch_size)
        self.max_batches, self.writer, self.prefix = max_batches, writer, prefix
        self.batch_size = batch_size
        # TensorBoard tags name the data scored, so evaluations of other data (or by another
        # evaluator) never share a tag; the returned metrics keep their plain names.
        self.tag_prefix = f"{task_name}/{split}/"
        self._step = partitioner.jit(lambda params, batch: model.loss_fn(params, batch)[1],
                                     out_shardings=partitioner.replicated)

    def __call__(self, params, step: int) -> dict:
        dataset = inputs.get_dataset(
            self.task_name, self.task_feature_lengths, split=self.split, batch_size=self.local_rows,
            shuffle=False, seed=0, pack=False, repeat=False, shard_info=self.shard_info)
        totals = None
        for index, batch in enumerate(dataset.as_numpy_iterator()):
            if self.max_batches is not None and index >= self.max_batches:
                break
            batch = _pad_rows(batch, self.local_rows)
            axes = {k: ("batch",) + (None,) * (v.ndim - 1) for k, v in batch.items()}
            sums = self._step(params, self.partitioner.global_batch(batch, axes))
            totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
        if totals is None:
            raise UserValueError(f"eval split {self.split!r} of task {self.task_name!r} is empty")
        values = {f"{self.prefix}{k}": float(v) for k, v in lm_lib.summarize(jax.device_get(totals)).items()}
        logging.info("eval at step %d on %s/%s: %s", step, self.task_name, self.split, values)
        if self.writer is not None:
            self.writer.write_scalars(step, {f"{self.tag_prefix}{k}": v for k, v in values.items()})
            self.writer.flush()
        return values

    def describe(self) -> str:
        batches = "all" if self.max_batches is None else f"at most {self.max_batches}"
        return (f"teacher-forced on task {self.task_name}, split {self.split}, {batches} batches of "
                f"{self.batch_size} rows")


# ---------------------------------------------------------------------------------------------
# Inference evaluation.


def pass_at_k_metric(judge: Callable[[object, str], bool] = None, ks: Sequence[int] = (1,)):
    """A seqio metric fn ``(targets, predictions, aux_values) -> {'pass@k': ...}``.

    ``judge(target, sample_text)`` says whether one sample passes (default: the text equals the
    target). A repair task passes a judge that runs the sample's fix against the task's tests.
    """
    judge = judge or (lambda target, text: str(text).strip() == str(target).strip())

    def metric_fn(targets, predictions, aux_values):
        del predictions
        counts = {}
        for index, (target, samples) in enumerate(zip(targets, aux_values["samples"])):
            counts[str(index)] = (len(samples), sum(bool(judge(target, s)) for s in samples))
        return metrics.pass_at_k(counts, ks)

    return metric_fn


# decoding.SamplingConfig is the one sampler configuration of every place that samples; an
# inference eval defaults to one greedy answer of up to 64 tokens.
_GREEDY_64 = SamplingConfig(num_samples=1, temperature=0.0, top_p=1.0, max_new_tokens=64)


class InferenceEvaluator:
    """Samples answers with next_jax's sampler and scores them with the task's seqio metrics."""

    def __init__(self, model: lm_lib.DecoderLM, partitioner: partitioning.Partitioner, task_name: str,
                 task_feature_lengths: Mapping[str, int], *, split: str = "validation",
                 sampler: SamplingConfig = _GREEDY_64, num_examples: Optional[int] = None,
                 log_dir: Optional[str] = None, writer=None):
        import seqio  # deferred: TensorFlow comes with it

        self.model, self.partitioner, self.sampler = model, partitioner, sampler
        self.writer = writer
        self.vocabulary = seqio.get_mixture_or_task(task_name).output_features["targets"].vocabulary
        self.width = int(task_feature_lengths["inputs"])
        self._evaluator = seqio.Evaluator(
            mixture_or_task_name=task_name,
            feature_converter=seqio.DecoderFeatureConverter(pack=False),
            eval_split=split, sequence_length=dict(task_feature_lengths), num_examples=num_examples,
            use_memory_cache=True, async_compute_metrics=False,
            logger_cls=(), log_dir=log_dir,
        )

    def _generate(self):
        s = self.sampler
        return infer.compiled_generate(self.model.config, self.partitioner, s.max_new_tokens, s.top_k_cap, 0)

    def __call__(self, params, step: int) -> dict:
        s = self.sampler
        generate = self._generate()
        sampling = s.params(s.resolve_stop_ids(self.vocabulary))
        seed = 0 if s.seed is None else s.seed  # the same prompts get the same samples at every step

        def predict_with_aux(dataset):
            indices, prompts = [], []
            for index, features in dataset.as_numpy_iterator():
                tokens = np.asarray(features["decoder_target_tokens"])
                n_inputs = max(int(np.sum(features.get("decoder_causal_attention", tokens > 0))) - 1, 1)
                indices.append(int(index))
                prompts.append(tokens[:n_inputs][-self.width:])
            outputs, texts = [], []
            for start in range(0, len(prompts), s.batch_size):
                chunk = prompts[start:start + s.batch_size]
                prompt = np.zeros((s.batch_size, self.width), np.int32)
                lengths = np.ones((s.batch_size,), np.int32)
                for i, p in enumerate(chunk):
                    prompt[i, :len(p)], lengths[i] = p, len(p)
                seeds = [[decoding.derive_seed(seed, str(indices[start + i] if i < len(chunk) else -1), j)
                          for j in range(s.num_samples)] for i in range(s.batch_size)]
                inputs = self.partitioner.global_batch(
                    {"p": prompt, "l": lengths, "s": decoding.seed_key_data(seeds)})
                out = generate(params, inputs["p"], inputs["l"], inputs["s"], sampling)
                tokens, out_lengths = np.asarray(out.tokens), np.asarray(out.lengths)
                for i in range(len(chunk)):
                    rows = [tokens[i, j, :out_lengths[i, j]] for j in range(s.num_samples)]
                    outputs.append(tokens[i, 0])
                    texts.append([self.vocabulary.decode(r.tolist()) for r in rows])
            return list(zip(indices, outputs)), {"samples": texts}

        all_metrics, _ = self._evaluator.evaluate(compute_metrics=True, step=step,
                                                  predict_with_aux_fn=predict_with_aux)
        result = all_metrics.result() if hasattr(all_metrics, "result") else all_metrics
        values = {}
        for task, task_metrics in result.items():
            for name, value in task_metrics.items():
                value = getattr(value, "value", value)
                if isinstance(value, (int, float, np.floating, np.integer)):
                    values[f"{task}/{name}"] = float(value)
        logging.info("inference eval at step %d: %s", step, values)
        if self.writer is not None and values:
            self.writer.write_scalars(step, values)
            self.writer.flush()
        return values


# ---------------------------------------------------------------------------------------------
# Entry.


def checkpoints_to_evaluate(model_dir: str, which: Union[str, int]) -> list:
    """Step paths of MODEL_DIR to score: 'latest', 'all', or one step number.

    For 'latest', every step, newest first: the newest that reads back whole is scored.
    """
    directory = checkpoints.checkpoint_dir(model_dir)
    steps = sorted(int(n) for n in nj_io.listdir(directory) if n.isdigit()) if nj_io.isdir(directory) else []
    if not steps:
        raise UserFileNotFoundError(f"evaluate: {directory} holds no checkpoints; train first (same MODEL_DIR) "
                                    "or give one checkpoint (checkpoint_eval.CheckpointEvalConfig.checkpoint)")
    if which == "latest":
        steps = steps[::-1]
    elif which != "all":
        if int(which) not in steps:
            raise UserFileNotFoundError(f"evaluate: no checkpoint for step {which} in {directory} (has {steps}); "
                                        "set checkpoint_eval.CheckpointEvalConfig.checkpoint_steps to one of them, 'latest' or 'all'")
        steps = [int(which)]
    return [(step, nj_io.join(directory, str(step))) for step in steps]


@dataclasses.dataclass(frozen=True)
class CheckpointEvalConfig:
    """What ``evaluate`` scores, and how.

    model: the DecoderLM or ModelConfig that was trained.
    task_name, task_feature_lengths, split: what to evaluate on (a registered SeqIO task).
    model_dir: the training run; results go to ``model_dir/eval`` (TensorBoard).
    checkpoint_steps: 'latest', 'all', or a step number.
    checkpoint: instead, one explicit checkpoint (orbax or Hugging Face), logged at step 0.
    batch_size, eval_batches: teacher-forced eval batches (all when eval_batches is None).
    partitioner: the mesh (None: every device, data parallel).
    inference: sampler settings for an InferenceEvaluator (None = teacher-forced only).
    evaluators: further callables ``(params, step) -> metrics``.
    """

    model: Any
    task_name: str
    task_feature_lengths: Mapping[str, int]
    model_dir: str
    checkpoint_steps: Union[str, int] = "latest"
    checkpoint: Optional[str] = None
    split: str = "validation"
    batch_size: int = 8
    eval_batches: Optional[int] = None
    partitioner: Optional[partitioning.Partitioner] = None
    inference: Optional[SamplingConfig] = None
    evaluators: Sequence[Callable] = ()


def evaluate(config: CheckpointEvalConfig) -> dict:
    """Scores checkpoints of ``config.model_dir``; returns {step: metrics}."""
    c = config
    model, task_name, task_feature_lengths, model_dir, split = c.model, c.task_name, c.task_feature_lengths, c.model_dir, c.split
    checkpoint_steps, checkpoint, batch_size, eval_batches = c.checkpoint_steps, c.checkpoint, c.batch_size, c.eval_batches
    partitioner, inference, evaluators = c.partitioner, c.inference, c.evaluators
    lm = lm_lib.as_lm(model)
    inputs.check_task(task_name, task_feature_lengths, lm.config)
    partitioner = partitioner or partitioning.Partitioner(partitioning.make_mesh())
    targets = [(0, checkpoint)] if checkpoint is not None else checkpoints_to_evaluate(model_dir, checkpoint_steps)
    writer = trainer_lib.metric_writer(model_dir, trainer_lib.tensorboard_run(checkpoint))
    run = [TeacherForced(lm, partitioner, task_name, task_feature_lengths, split=split, batch_size=batch_size,
                         max_batches=eval_batches, writer=writer)]
    if inference is not None:
        run.append(InferenceEvaluator(lm, partitioner, task_name, task_feature_lengths, split=split,
                                      sampler=inference, writer=writer))
    run.extend(evaluators)
    results = {}
    newest_only = checkpoint is None and checkpoint_steps == "latest"
    first_error = None
    if newest_only and len(targets) > 1:
        checkpoints.quiet_abandoned_reads()
    for index, (step, path) in enumerate(targets):
        try:
            params, _ = weights.load_params(path, lm.config, partitioner)
        except Exception as e:  # a step left partial by a crash mid-save: score the one before
            if not newest_only or index == len(targets) - 1:
                raise first_error or e
            first_error = first_error or e
            logging.warning("evaluate: checkpoint %s does not read back whole (%s); scoring the step before it; "
                            "it is left in place", path, checkpoints.short_reason(e))
            continue
        writer.write_texts(step, {"scored": f"checkpoint {nj_io.absolute(path)}; " + "; ".join(
            e.describe() if hasattr(e, "describe") else type(e).__name__ for e in run)})
        metrics = {}
        for evaluator in run:
            metrics.update(evaluator(params, step))
        results[step] = metrics
        if newest_only:
            break
    writer.close()
    return results
