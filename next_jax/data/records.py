"""The record types that flow between NExT's stages, and their JSON Lines files.

Every stage reads files of one record type and writes files of the next (the data flow in the README). A record
is a frozen dataclass; a file holds one JSON object per line with a ``schema_version`` field. Bad
input fails with a :class:`RecordError` that names the file, the 1-based line and the field, so a
user can fix the data instead of guessing. Writers go through a temporary name and an atomic
rename, so an interrupted stage never leaves a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from typing import (Any, Callable, ClassVar, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Type,
                    TypeVar, Union)

from next_jax import io as nj_io
from next_jax.errors import UserValueError

SCHEMA_VERSION = 1

TRACE_OUTCOMES = ("pass", "fail", "error", "timeout")
PROMPT_VARIANTS = ("trace", "no_trace", "proxy")
VERDICT_STATUSES = ("pass", "fail", "error", "timeout", "syntax_error", "no_code")


class RecordError(UserValueError):
    """A record that does not match its schema: says where (file:line) and which field.

    A user error (``next_jax.main`` prints it on one line, exit status 2) and a ValueError."""

    def __init__(self, message: str, *, where: str = "", field: str = ""):
        self.where = where
        self.field = field
        prefix = where or "<record>"
        if field:
            prefix += f": field '{field}'"
        super().__init__(f"{prefix}: {message}")


# --------------------------------------------------------------------------------------------
# Field checks. Kept as small functions so each error message is specific.


def _require(d: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in d:
        raise RecordError("missing required field", where=where, field=name)
    return d[name]


def _check_type(value: Any, types, name: str, where: str, *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return value
    # bool is an int subclass: never accept it where a number is meant.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise RecordError(f"expected {_type_name(types)}, got bool", where=where, field=name)
    if not isinstance(value, types):
        raise RecordError(
            f"expected {_type_name(types)}, got {type(value).__name__}", where=where, field=name
        )
    return value


def _type_name(types) -> str:
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


def _check_str_list(value: Any, name: str, where: str) -> list:
    _check_type(value, list, name, where)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RecordError(
                f"item {i} should be str, got {type(item).__name__}", where=where, field=f"{name}[{i}]"
            )
    return list(value)


def _check_choice(value: Any, choices: Sequence[str], name: str, where: str) -> str:
    _check_type(value, str, name, where)
    if value not in choices:
        raise RecordError(f"{value!r} is not one of {list(choices)}", where=where, field=name)
    return value


def _check_unknown(d: Mapping[str, Any], cls, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)} | {"schema_version"}
    for key in d:
        if key not in known:
            raise RecordError(
                f"unknown field for {cls.__name__} (known: {sorted(known)})", where=where, field=key
            )


def _check_version(d: Mapping[str, Any], where: str) -> None:
    version = d.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"schema_version {version!r} is not supported (this next_jax reads {SCHEMA_VERSION})",
            where=where,
            field="schema_version",
        )


class _Record:
    """Shared (de)serialisation; subclasses define ``_parse``."""

    KIND: ClassVar[str] = ""

    def to_dict(self) -> dict:
        d = {"schema_version": SCHEMA_VERSION}
        d.update(dataclasses.asdict(self))
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = ""):
        if not isinstance(d, Mapping):
            raise RecordError(f"expected a JSON object, got {type(d).__name__}", where=where)
        _check_version(d, where)
        _check_unknown(d, cls, where)
        return cls._parse(d, where)

    @classmethod
    def _parse(cls, d: Mapping[str, Any], where: str):  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# The records.


@dataclasses.dataclass(frozen=True)
class RepairTask(_Record):
    """A buggy program to repair: the NL spec, the code, and the tests that judge a fix.

    ``tests`` are shown in the prompt and traced; ``eval_tests`` (e.g. EvalPlus's larger set)
    judge a fix at evaluation time and default to ``tests``.
    """

    task_id: str
    source: str
    description: str
    buggy_code: str
    entry_point: str
    tests: list
    eval_tests: list = None  # type: ignore[assignment]
    setup_code: str = ""
    reference_fix: Optional[str] = None
    meta: dict = dataclasses.field(default_factory=dict)

    KIND: ClassVar[str] = "RepairTask"

    def __post_init__(self):
        if self.eval_tests is None:
            object.__setattr__(self, "eval_tests", list(self.tests))

    @classmethod
    def _parse(cls, d, where):
        return cls(**_repair_task_fields(d, where))


def _repair_task_fields(d: Mapping[str, Any], where: str) -> dict:
    fields = {}
    for name in ("task_id", "source", "description", "buggy_code", "entry_point"):
        fields[name] = _check_type(_require(d, name, where), str, name, where)
    if not fields["task_id"]:
        raise RecordError("must not be empty", where=where, field="task_id")
    fields["tests"] = _check_str_list(_require(d, "tests", where), "tests", where)
    eval_tests = d.get("eval_tests")
    fields["eval_tests"] = (
        list(fields["tests"]) if eval_tests is None else _check_str_list(eval_tests, "eval_tests", where)
    )
    fields["setup_code"] = _check_type(d.get("setup_code", ""), str, "setup_code", where)
    fields["reference_fix"] = _check_type(
        d.get("reference_fix"), str, "reference_fix", where, nullable=True
    )
    fields["meta"] = _check_type(d.get("meta", {}), dict, "meta", where)
    return fields


@dataclasses.dataclass(frozen=True)
class Trace:
    """One test's execution of the buggy program, rendered in NExT's inline format."""

    test: str
    traced_code: str
    outcome: str
    truncated: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "", field: str = "traces"):
        if not isinstance(d, Mapping):
            raise RecordError(f"expected an object, got {type(d).__name__}", where=where, field=field)
        for key in d:
            if key not in ("test", "traced_code", "outcome", "truncated"):
                raise RecordError("unknown field for Trace", where=where, field=f"{field}.{key}")
        test = _check_type(_require(d, "test", where), str, f"{field}.test", where)
        code = _check_type(_require(d, "traced_code", where), str, f"{field}.traced_code", where)
        outcome = _check_choice(_require(d, "outcome", where), TRACE_OUTCOMES, f"{field}.outcome", where)
        truncated = _check_type(d.get("truncated", False), bool, f"{field}.truncated", where)
        return cls(test=test, traced_code=code, outcome=outcome, truncated=truncated)


@dataclasses.dataclass(frozen=True)
class TracedTask(RepairTask):
    """A RepairTask plus one inline trace per test in ``tests`` (same order)."""

    traces: list = dataclasses.field(default_factory=list)

    KIND: ClassVar[str] = "TracedTask"

    @property
    def truncated(self) -> bool:
        return any(t.truncated for t in self.traces)

    def repair_task(self) -> RepairTask:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(RepairTask)}
        return RepairTask(**fields)

    @classmethod
    def from_repair_task(cls, task: RepairTask, traces: Iterable[Trace]) -> "TracedTask":
        fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(RepairTask)}
        return cls(**fields, traces=list(traces))

    @classmethod
    def _parse(cls, d, where):
        fields = _repair_task_fields(d, where)
        raw = _check_type(_require(d, "traces", where), list, "traces", where)
        traces = [Trace.from_dict(t, where=where, field=f"traces[{i}]") for i, t in enumerate(raw)]
        return cls(**fields, traces=traces)


@dataclasses.dataclass(frozen=True)
class Sample(_Record):
    """One model output for one task: the rationale and the fix parsed out of ``text``.

    ``seed`` reproduces the sample (see decoding); ``sample_id`` is unique and stable across
    reruns, so resumed stages can skip what is done.
    """

    task_id: str
    iteration: int
    sample_id: str
    prompt_variant: str
    text: str
    rationale: str
    fix: Optional[str]
    logprob: Optional[float] = None
    model: str = ""
    seed: Optional[int] = None

    KIND: ClassVar[str] = "Sample"

    @classmethod
    def _parse(cls, d, where):
        return cls(
            task_id=_check_type(_require(d, "task_id", where), str, "task_id", where),
            iteration=_check_type(_require(d, "iteration", where), int, "iteration", where),
            sample_id=_check_type(_require(d, "sample_id", where), str, "sample_id", where),
            prompt_variant=_check_choice(
                _require(d, "prompt_variant", where), PROMPT_VARIANTS, "prompt_variant", where
            ),
            text=_check_type(_require(d, "text", where), str, "text", where),
            rationale=_check_type(d.get("rationale", ""), str, "rationale", where),
            fix=_check_type(_require(d, "fix", where), str, "fix", where, nullable=True),
            logprob=_as_float(d.get("logprob"), "logprob", where),
            model=_check_type(d.get("model", ""), str, "model", where),
            seed=_check_type(d.get("seed"), int, "seed", where, nullable=True),
        )


def _as_float(value, name, where):
    if value is None:
        return None
    _check_type(value, (int, float), name, where)
    return float(value)


@dataclasses.dataclass(frozen=True)
class Verdict(_Record):
    """The executor's judgement of one sample's fix against its task's tests."""

    task_id: str
    sample_id: str
    status: str
    tests_passed: int
    tests_total: int
    detail: str = ""
    wall_s: float = 0.0

    KIND: ClassVar[str] = "Verdict"

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @classmethod
    def _parse(cls, d, where):
        verdict = cls(
            task_id=_check_type(_require(d, "task_id", where), str, "task_id", where),
            sample_id=_check_type(_require(d, "sample_id", where), str, "sample_id", where),
            status=_check_choice(_require(d, "status", where), VERDICT_STATUSES, "status", where),
            tests_passed=_check_type(_require(d, "tests_passed", where), int, "tests_passed", where),
            tests_total=_check_type(_require(d, "tests_total", where), int, "tests_total", where),
            detail=_check_type(d.get("detail", ""), str, "detail", where),
            wall_s=_as_float(d.get("wall_s", 0.0), "wall_s", where),
        )
        if not 0 <= verdict.tests_passed <= verdict.tests_total:
            raise RecordError(
                f"tests_passed={verdict.tests_passed} outside [0, tests_total={verdict.tests_total}]",
                where=where,
                field="tests_passed",
            )
        return verdict


RECORD_TYPES = {cls.KIND: cls for cls in (RepairTask, TracedTask, Sample, Verdict)}

R = TypeVar("R", bound=_Record)


# --------------------------------------------------------------------------------------------
# JSON Lines files.


def read_json_lines(path: str, on_error: Optional[Callable[[RecordError], None]] = None
                    ) -> Iterator[Tuple[str, Any]]:
    """Yields ``("path:line", object)`` for each non-blank line of a JSON Lines file (or .gz).

    The one place that turns lines into objects, so every reader (our records and the public
    datasets alike) reports bad JSON the same way: file, line and column. With ``on_error``, a
    line that is not JSON is passed to it as a RecordError and reading goes on (a builder counts
    malformed rows without losing the good ones); without it, the error is raised.
    """
    # Text mode from the path layer itself: tf.io.gfile's files (gs://, ram://) cannot be wrapped in
    # a TextIOWrapper, but read text and iterate lines as local files do.
    with nj_io.open_file(path, "rb" if path.endswith(".gz") else "r") as raw:
        f = gzip.open(raw, "rt", encoding="utf-8") if path.endswith(".gz") else raw
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                error = RecordError(f"invalid JSON ({e.msg} at column {e.colno})", where=where)
                if on_error is None:
                    raise error from None
                on_error(error)
                continue
            yield where, obj


def parse_rows(rows: Iterable[Tuple[str, Any]], parse: Callable[[Any, str], Any],
               on_error: Optional[Callable[[RecordError], None]] = None) -> Iterator[Any]:
    """``parse(obj, where)`` over ``(where, obj)`` rows; RecordErrors go to ``on_error`` if given.

    The shared shape of every dataset reader: a malformed row is reported by file, line and
    field and, when the caller collects errors, skipped without losing the rows around it.
    """
    for where, obj in rows:
        try:
            yield parse(obj, where)
        except RecordError as e:
            if on_error is None:
                raise
            on_error(e)


def read_records(path: str, record_type: Type[R]) -> Iterator[R]:
    """Yields the records of a JSON Lines file, validating each; blank lines are skipped.

    Raises RecordError naming ``path:line`` (and the field) at the first bad line; records
    before it have already been yielded, so a caller can report how far the file was good.
    """
    for where, obj in read_json_lines(path):
        yield record_type.from_dict(obj, where=where)


def read_tasks(path: str) -> Iterator[RepairTask]:
    """Yields the tasks of a RepairTask or TracedTask file (a TracedTask is a RepairTask).

    Stages that only need the task (checking, the ``no_trace`` prompt) accept either file.
    """
    for where, obj in read_json_lines(path):
        yield task_from_dict(obj, where=where)


def tasks_by_id(tasks: Union[str, Iterable[RepairTask]]) -> Dict[str, RepairTask]:
    """Tasks by task_id, from a task file (a path) or task records; a repeated task_id is an error
    naming the file and the task's position."""
    source = f"{tasks}, " if isinstance(tasks, str) else ""
    out: Dict[str, RepairTask] = {}
    for i, task in enumerate(read_tasks(tasks) if isinstance(tasks, str) else tasks, start=1):
        if task.task_id in out:
            raise RecordError(f"duplicate task_id {task.task_id!r}", where=f"{source}task #{i}", field="task_id")
        out[task.task_id] = task
    return out


def task_from_dict(obj: Any, *, where: str = "") -> RepairTask:
    """A TracedTask when the object has traces, else a RepairTask."""
    has_traces = isinstance(obj, Mapping) and "traces" in obj
    return (TracedTask if has_traces else RepairTask).from_dict(obj, where=where)


def require_records(path: str, what: str, hint: str) -> None:
    """Raises a RecordError naming ``path`` when it holds no record (only blank lines, or nothing):
    an empty input is a mistake to report, never a run that silently does nothing."""
    with nj_io.open_file(path, "rb") as raw:
        f = gzip.open(raw, "rb") if path.endswith(".gz") else raw
        if any(line.strip() for line in f):
            return
    raise RecordError(f"the {what} is empty (no JSON line); {hint}", where=path)


def read_all(path: str, record_type: Type[R]) -> list:
    return list(read_records(path, record_type))


class AtomicWriter:
    """Writes JSON Lines to ``path`` (local, ``gs://``, ...) through ``nj_io.atomic_write``.

    On an exception the temporary file is removed and ``path`` is untouched, so readers only ever
    see complete files and a resumed stage can trust that an existing file is finished.
    """

    def __init__(self, path: str):
        self.path = path
        self._writing = nj_io.atomic_write(path)
        self._file = self._writing.__enter__()
        self.count = 0

    def write(self, record: _Record) -> None:
        self._file.write(record.to_json() + "\n")
        self.count += 1

    def close(self) -> None:
        self._writing.__exit__(None, None, None)

    def abort(self) -> None:
        error = RuntimeError(f"{self.path}: write aborted")
        self._writing.__exit__(RuntimeError, error, None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_records(path: str, records: Iterable[_Record]) -> int:
    """Writes all records atomically; returns how many were written."""
    with AtomicWriter(path) as writer:
        for record in records:
            writer.write(record)
    return writer.count
