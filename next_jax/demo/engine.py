"""The demo's tiny model, trained and sampled in this process with compiled functions kept warm.

Every arm of every seed uses a few fixed shapes (a prompt width from ``prompt_widths``, the answer
width, the batch), so one ``Trainer`` per optimizer and one compiled sampler per width serve them
all: a training run is a loop of already-compiled steps, not a new job with its own start-up.
JAX's persistent compilation cache (``compilation_cache_dir``) keeps the compiled programs across
runs of the command.

Examples are (prompt, answer) strings; a training row is ``prompt + answer + EOS`` right-padded to
``width + answer_width`` with the loss on the answer and EOS only, and sampling continues a
right-padded prompt at its own length, so both see the answer at the same positions. ``width`` is
the narrowest of ``prompt_widths`` that holds every prompt of the job (or of the sampling call):
prompts without traces are half as long as traced ones, and a step costs about its row's length,
so they train and sample at their own width instead of padding to the traced one.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from next_jax import decoding
from next_jax import optimizers
from next_jax import partitioning
from next_jax.infer import compiled_generate
from next_jax.models import lm as lm_lib
from next_jax.trainer import Trainer

EOS_ID = 1
PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class TrainStepConfig:
    """One optimizer for every run of a kind (bootstrap or fine-tune): a constant learning rate
    after warmup, so its compiled step is shared by every arm and seed."""

    learning_rate: float = 2e-3
    warmup_steps: int = 20
    batch_size: int = 16
    weight_decay: float = 0.0
    prompt_loss_weight: float = 0.0


def enable_compilation_cache(directory: Optional[str]) -> None:
    """Keeps compiled programs on disk, so a rerun (or another seed's process) skips compiling."""
    if not directory:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


class Engine:
    """Training and sampling of one model architecture at fixed shapes."""

    def __init__(self, model, vocabulary, *, prompt_widths: Sequence[int], answer_width: int, sample_batch: int,
                 partitioner=None):
        if not prompt_widths or min(prompt_widths) < 1:
            raise ValueError(f"prompt_widths must be positive widths, got {tuple(prompt_widths)}")
        self.config = model
        self.vocabulary = vocabulary
        self.prompt_widths = tuple(sorted(set(prompt_widths)))
        self.answer_width = answer_width
        self.sample_batch = sample_batch
        self.partitioner = partitioner or partitioning.Partitioner(partitioning.make_mesh())
        self.lm = lm_lib.DecoderLM(model)
        self._trainers: Dict[TrainStepConfig, object] = {}
        self.steps_run = 0

    @property
    def prompt_width(self) -> int:
        """The widest prompt any job or call may have."""
        return self.prompt_widths[-1]

    # -- tokens -----------------------------------------------------------------------------

    def encode_prompt(self, text: str) -> List[int]:
        ids = list(self.vocabulary.encode(text))
        if len(ids) > self.prompt_width:
            raise ValueError(f"a prompt of {len(ids)} tokens does not fit prompt_width={self.prompt_width}")
        return ids

    def encode_document(self, text: str) -> List[int]:
        """A whole text trained with the loss on every token (no prompt): it must fit a row."""
        ids = list(self.vocabulary.encode(text))
        width = self.prompt_width + self.answer_width
        if len(ids) > width:
            raise ValueError(f"a document of {len(ids)} tokens does not fit prompt_width + answer_width = {width}")
        return ids

    def encode_answer(self, text: str) -> Optional[List[int]]:
        """The answer's ids plus EOS; None when it does not fit ``answer_width``."""
        ids = list(self.vocabulary.encode(text)) + [EOS_ID]
        return ids if len(ids) <= self.answer_width else None

    def width_for(self, prompts: Sequence[List[int]], answers: Sequence[List[int]] = ()) -> int:
        """The narrowest prompt width that holds every prompt (and every prompt + answer in a row
        of ``width + answer_width``: a document is all answer)."""
        need_prompt = max((len(p) for p in prompts), default=0)
        need_row = max((len(p) + len(a) for p, a in zip(prompts, answers)), default=0) - self.answer_width
        need = max(need_prompt, need_row)
        for width in self.prompt_widths:
            if width >= need:
                return width
        raise ValueError(f"a prompt of {need} tokens does not fit prompt_widths={self.prompt_widths}")

    # -- training ---------------------------------------------------------------------------

    def trainer(self, settings: TrainStepConfig):
        if settings not in self._trainers:
            schedule = optimizers.Schedule(peak=settings.learning_rate, warmup_steps=settings.warmup_steps,
                                           decay="constant")
            optimizer = optimizers.AdamW(learning_rate=schedule, weight_decay=settings.weight_decay)
            self._trainers[settings] = Trainer(self.lm, optimizer.make(1), self.partitioner)
        return self._trainers[settings]

    def init_params(self, settings: TrainStepConfig, seed: int):
        return self.trainer(settings).init_state(seed).params

    def _rows(self, examples: Sequence[Tuple[List[int], List[int]]],
              prompt_loss_weight: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
        width = self.width_for([p for p, _ in examples], [a for _, a in examples]) + self.answer_width
        tokens = np.zeros((len(examples), width), np.int32)
        weights = np.zeros((len(examples), width), np.float32)
        for i, (prompt, answer) in enumerate(examples):
            n = len(prompt)
            tokens[i, :n] = prompt
            tokens[i, n:n + len(answer)] = answer
            weights[i, :n] = prompt_loss_weight
            weights[i, n:n + len(answer)] = 1.0
        return tokens, weights

    def train(self, params, examples: Sequence[Tuple[List[int], List[int]]], *, steps: int,
              settings: TrainStepConfig, seed: int):
        """``params`` after ``steps`` updates on shuffled epochs of ``examples`` (a fresh optimizer
        state); returns (params, last loss)."""
        if steps <= 0 or not examples:
            return params, None
        trainer = self.trainer(settings)
        state = trainer.state_from_params(params)
        tokens, weights = self._rows(examples, settings.prompt_loss_weight)
        rng = np.random.default_rng(seed)
        order: List[int] = []
        loss = None
        for _ in range(steps):
            while len(order) < settings.batch_size:
                order.extend(rng.permutation(len(examples)).tolist())
            take, order = order[:settings.batch_size], order[settings.batch_size:]
            batch = trainer.global_batch({"decoder_target_tokens": tokens[take], "decoder_loss_weights": weights[take]})
            state, metrics = trainer.train_step(state, batch)
            loss = metrics["loss"]
        self.steps_run += steps
        return state.params, float(loss)

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, params, prompts: Sequence[List[int]], *, num_samples: int, temperature: float,
               task_ids: Sequence[str], run_seed: int) -> List[List[str]]:
        """``num_samples`` decoded answers per prompt (EOS and after dropped); sample ``j`` of a
        task draws from ``derive_seed(run_seed, task_id, j)``, so a stage with its own run seed
        never repeats another stage's draws."""
        generate = compiled_generate(self.config, self.partitioner, self.answer_width, 64, PAD_ID)
        params_jax = decoding.SamplingParams.make(temperature=temperature, stop_ids=[EOS_ID])
        out: List[List[str]] = []
        b, width = self.sample_batch, self.width_for(prompts)
        for lo in range(0, len(prompts), b):
            part = prompts[lo:lo + b]
            tokens = np.full((b, width), PAD_ID, np.int32)
            lengths = np.ones((b,), np.int32)
            keys = np.zeros((b, num_samples, 2), np.uint32)
            for i, ids in enumerate(part):
                tokens[i, :len(ids)] = ids
                lengths[i] = len(ids)
            keys[:len(part)] = decoding.seed_key_data(np.array(
                [[decoding.derive_seed(run_seed, task_ids[lo + i], j) for j in range(num_samples)]
                 for i in range(len(part))], dtype=object))
            result = generate(params, tokens, lengths, keys, params_jax)
            toks, lens = np.asarray(result.tokens), np.asarray(result.lengths)
            for i in range(len(part)):
                row = []
                for j in range(num_samples):
                    ids = [t for t in toks[i, j, :lens[i, j]].tolist() if t != EOS_ID]
                    row.append(self.vocabulary.decode(ids))
                out.append(row)
        return out
