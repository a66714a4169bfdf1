"""Sampling and checking as resumable steps over files: the building blocks of evaluation and of
the self-training loop.

``sample_tasks`` prompts a model with every task of a task file (in an answer format and a prompt
variant) and writes N parsed samples per task; it runs on every process (sampling is SPMD) and
resumes chunk by chunk through ``infer``. ``check_file`` runs every sample's fix against its
task's tests in the sandbox and writes one verdict per sample, in fixed-size chunks that are each
written atomically, so a run killed while checking redoes at most one chunk and never loses or
counts a verdict twice. Only process 0 checks and writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Dict, Iterator, List, Mapping, Sequence, Tuple, Union

from absl import logging

from next_jax import infer as infer_lib
from next_jax import io as nj_io
from next_jax import multihost
from next_jax import tasks as tasks_lib
from next_jax.data.records import AtomicWriter, RepairTask, Sample, Verdict, read_records, read_tasks
# SamplingConfig lives with the sampler (next_jax.decoding); the name is kept here for Python
# imports. Gin files bind it as ``decoding.SamplingConfig`` only: gin registers a class under the
# first name a file uses, so a file that said ``runs.SamplingConfig`` would make every later
# ``decoding.SamplingConfig`` binding in the process unknown.
from next_jax.decoding import SamplingConfig, stage_seed
from next_jax.evaluation import formats as formats_lib
from next_jax.execution.checker import CheckConfig, Checker
from next_jax.models.ref import ModelRef
from next_jax.progress import Progress


@dataclasses.dataclass(frozen=True)
class ExecutionConfig:
    """The sandbox pool that checks fixes: worker processes, what each check may take (``check``: the
    per-test timeout, memory, output; its ``tests_field`` is chosen by each stage) and the chunk size."""

    workers: int = 2
    check: CheckConfig = CheckConfig()
    chunk_size: int = 1024  # samples per verdict chunk, the unit of resumption



@dataclasses.dataclass(frozen=True)
class TaskPrompts:
    """What a sampling step prompts with: every task of ``tasks_file`` in prompt ``variant``
    ('trace' | 'no_trace'), built and parsed by ``answer_format`` (a registered name or an
    ``AnswerFormat``), after the few-shot ``exemplars`` ([(task, answer text)])."""

    tasks_file: str
    answer_format: Union[str, formats_lib.AnswerFormat] = "fenced"
    variant: str = "trace"
    exemplars: Sequence[Tuple[RepairTask, str]] = ()

    @property
    def fmt(self) -> formats_lib.AnswerFormat:
        return formats_lib.get_format(self.answer_format)

    def replace(self, **changes) -> "TaskPrompts":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class StepOutput:
    """Where a sampling or evaluation step writes: ``model_dir/iteration_{iteration}/{name}``
    (``name`` may hold slashes, e.g. ``eval/trace.samples``); ``iteration`` is also recorded in
    every sample."""

    model_dir: str
    iteration: int
    name: str

    @property
    def path(self) -> str:
        return nj_io.join(self.model_dir, f"iteration_{self.iteration}", self.name)

    def child(self, name: str) -> "StepOutput":
        return dataclasses.replace(self, name=f"{self.name}/{name}")


def read_answered_tasks(path: str) -> list:
    """[(task, answer text)] from a task file whose records carry ``meta['answer']`` (a seed set
    or few-shot exemplars, in the answer format of the run)."""
    out = []
    for i, task in enumerate(read_tasks(path), start=1):
        answer = task.meta.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"{path}: record {i} ({task.task_id}): meta['answer'] must be the answer text")
        out.append((task, answer))
    return out


def _task_name(*parts: str) -> str:
    return "next_eval_" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


def sample_tasks(*, model: ModelRef, sampling: SamplingConfig, prompts: TaskPrompts, out: StepOutput) -> str:
    """Samples every task of ``prompts.tasks_file``; returns ``out.path + '.jsonl'``.

    Each prompt is the answer format's ``prompt(task, variant, exemplars)``, cut to
    ``model.task_feature_lengths['inputs']``; each answer is split into (rationale, fix) by its
    ``parse(text, task)``. Collective: call it on every process.
    """
    fmt, tasks_file, variant = prompts.fmt, prompts.tasks_file, prompts.variant
    model_dir, iteration, name = out.model_dir, out.iteration, out.name
    final = out.path + ".jsonl"
    if multihost.is_chief():
        nj_io.makedirs(nj_io.dirname(final))
    multihost.barrier(f"sample-dirs:{final}")
    task_name = _task_name(tasks_file, variant, name, model_dir)
    tasks_lib.register_repair_task(task_name, split_files={"test": tasks_file}, vocabulary=model.vocabulary,
                                   variant=variant, exemplars=tuple(prompts.exemplars), prompt_fn=fmt.prompt)
    if sampling.seed is None:
        raise ValueError(f"sample_tasks ({name}): sampling.seed must be an int (a resumable stage draws the same "
                         "samples again); bind decoding.SamplingConfig.seed")
    raw = infer_lib.infer(infer_lib.InferConfig(
        model=model.replace(task_feature_lengths={"inputs": int(model.task_feature_lengths["inputs"])}),
        task_name=task_name, model_dir=model_dir, split="test",
        sampling=dataclasses.replace(sampling, seed=stage_seed(sampling.seed, f"{iteration}:{name}")),
        iteration=iteration, prompt_variant=variant, output_name=f"{name}.raw",
    ))
    if multihost.is_chief():
        tasks = {t.task_id: t for t in read_tasks(tasks_file)}
        with AtomicWriter(final) as writer:
            for sample in read_records(raw, Sample):
                rationale, fix = fmt.parse(sample.text, tasks[sample.task_id])
                writer.write(dataclasses.replace(sample, rationale=rationale, fix=fix))
    multihost.barrier(f"sample-parsed:{final}")
    return final


def check_file(
    tasks: Mapping[str, RepairTask],
    samples_path: str,
    verdicts_path: str,
    *,
    execution: ExecutionConfig,
    tests_field: str = "tests",
    name: str = "check",
) -> int:
    """Writes one Verdict per sample of ``samples_path`` (same order) to ``verdicts_path``.

    Resumes at the first unwritten chunk. Process 0 only. Returns the number of verdicts.
    """
    if nj_io.exists(verdicts_path):
        return sum(1 for _ in read_records(verdicts_path, Verdict))
    samples = list(read_records(samples_path, Sample))
    size = execution.chunk_size
    chunks_dir = verdicts_path + ".chunks"
    nj_io.makedirs(chunks_dir)
    chunk_path = lambda c: nj_io.join(chunks_dir, f"chunk-{c:05d}.jsonl")  # noqa: E731
    num_chunks = (len(samples) + size - 1) // size
    done = [c for c in range(num_chunks) if nj_io.exists(chunk_path(c))]
    todo = [c for c in range(num_chunks) if c not in set(done)]
    progress = Progress(name, total=len(samples), unit="samples", start=sum(
        len(samples[c * size:(c + 1) * size]) for c in done))
    passed = 0
    if todo:
        options = dataclasses.replace(execution.check, tests_field=tests_field)
        with Checker(workers=execution.workers, options=options) as checker:
            for c in todo:
                part = samples[c * size:(c + 1) * size]
                with AtomicWriter(chunk_path(c)) as out:
                    for verdict in check_distinct(checker, tasks, part):
                        out.write(verdict)
                        passed += verdict.passed
                        progress.update(1, passed=passed)
    progress.finish()
    with AtomicWriter(verdicts_path) as out:
        for c in range(num_chunks):
            verdicts = list(read_records(chunk_path(c), Verdict))
            want = [s.sample_id for s in samples[c * size:(c + 1) * size]]
            if [v.sample_id for v in verdicts] != want:
                raise RuntimeError(f"{chunk_path(c)}: verdicts do not match the samples of chunk {c}; "
                                   f"remove {chunks_dir} to check again")
            for verdict in verdicts:
                out.write(verdict)
    nj_io.rmtree(chunks_dir)
    logging.info("%s: wrote %d verdicts to %s", name, len(samples), verdicts_path)
    return len(samples)


def check_distinct(checker, tasks: Mapping[str, RepairTask], samples: Sequence[Sample]) -> Iterator[Verdict]:
    """One verdict per sample, in order, running each distinct (task, fix) once.

    Many samples of one task carry the same fix (a small model's N samples often agree, and
    answers that differ only in their rationale edit the program the same way). The judge's
    verdict is a function of the program and the tests, so the first run's verdict is given to
    every sample with that fix, under the sample's own id.
    """
    first: Dict[tuple, int] = {}
    distinct: List[Sample] = []
    for sample in samples:
        key = (sample.task_id, sample.fix)
        if key not in first:
            first[key] = len(distinct)
            distinct.append(sample)
    verdicts = list(checker.check(tasks, distinct))
    for sample in samples:
        verdict = verdicts[first[(sample.task_id, sample.fix)]]
        yield verdict if verdict.sample_id == sample.sample_id else dataclasses.replace(
            verdict, sample_id=sample.sample_id, wall_s=0.0)
