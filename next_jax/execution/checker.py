"""Checks samples' fixes against their tasks' tests and returns one Verdict per sample.

Built on ``SandboxPool``: one isolated child per sample runs the program and every test (see
``harness``); this process decides each assert from the plain values the child sent back (see
``splitting`` and ``templates``), so nothing the candidate does inside its process can turn a
failing test into a pass. Verdict statuses (``records.VERDICT_STATUSES``):

  no_code       the sample has no fix (``fix: null``)
  syntax_error  the fix does not compile
  pass          the program ran, every test finished, every assert held, the child exited cleanly
  fail          the first test that did not pass had a false assert (or raised AssertionError,
                or skipped an assert it must run, or an assert's value was not plain data)
  error         the program or the first non-passing test raised, crashed, ran out of memory,
                exited early, or its child sent something the protocol does not allow
  timeout       the program or the first non-passing test ran past the per-test timeout

The program is: the setup code's top-level imports, the fix, then the whole setup code (MBPP's
``test_setup_code`` builds objects from classes the fix defines, so it must follow the fix; the
imports go first so the fix can rely on them). Tests share the program's globals and run in
order; after a timeout the remaining tests are not run. Asserts do not stop a test when they
fail (only the parent knows they failed), so a test runs to its end; the first failing assert
is what the verdict reports.
"""

from __future__ import annotations

import collections
import dataclasses
import marshal
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from next_jax.data.records import RepairTask, Sample, Verdict
from next_jax.execution import harness, splitting, templates
from next_jax.execution.sandbox import Limits, SandboxPool, SandboxResult

DETAIL_CHARS = 1000


class UnknownTaskError(KeyError):
    """A sample names a task_id that is not among the tasks given to the checker."""


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    test_timeout_s: float = 3.0
    memory_bytes: int = 2 << 30
    tests_field: str = "tests"  # 'tests' | 'eval_tests'
    strict_types: bool = False
    max_output_bytes: int = 64 << 10

    def __post_init__(self):
        if self.tests_field not in ("tests", "eval_tests"):
            raise ValueError(f"tests_field must be 'tests' or 'eval_tests', got {self.tests_field!r}")
        if not self.test_timeout_s > 0:
            raise ValueError(f"test_timeout_s must be > 0, got {self.test_timeout_s}")


@dataclasses.dataclass
class _Plan:
    """Everything about a task that is the same for all its samples (computed once)."""

    tests: Tuple[splitting.SplitTest, ...] = ()
    sites: Optional[templates.CompiledSites] = None
    before_fix: Tuple[bytes, ...] = ()
    after_fix: Tuple[bytes, ...] = ()
    broken: str = ""  # why the task itself cannot be checked (tests or setup do not parse)


def _compile(source: str, name: str) -> bytes:
    return marshal.dumps(compile(source, name, "exec", dont_inherit=True, optimize=0))


def build_plan(task: RepairTask, options: CheckOptions) -> _Plan:
    tests = list(getattr(task, options.tests_field))
    try:
        split = splitting.split_tests(tests, options.strict_types, filename=f"<{task.task_id} test>")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return _Plan(broken=f"task {task.task_id}: a test does not compile: {e}")
    plan = _Plan(tests=split.tests, sites=templates.CompiledSites(split.sites))
    if task.setup_code.strip():
        try:
            plan.after_fix = (_compile(task.setup_code, "<setup_code>"),)
        except (SyntaxError, ValueError) as e:
            return _Plan(broken=f"task {task.task_id}: setup_code does not compile: {e}")
        imports = splitting.first_import_statements(task.setup_code)
        if imports:
            plan.before_fix = (_compile(imports, "<setup_code imports>"),)
    return plan


class Checker:
    """Turns (task, sample) pairs into Verdicts with a warm pool of sandbox workers."""

    def __init__(self, pool: Optional[SandboxPool] = None, *, workers: Optional[int] = None,
                 options: CheckOptions = CheckOptions(), plan_cache_size: int = 20000):
        self.options = options
        self._own_pool = pool is None
        self.pool = pool or SandboxPool(workers, targets=[harness.TARGET])
        self._plans: "collections.OrderedDict[tuple, _Plan]" = collections.OrderedDict()
        self._plan_cache_size = plan_cache_size
        self.forms = collections.Counter()  # split / guarded tests seen, for reports

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> "Checker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------

    def plan(self, task: RepairTask) -> _Plan:
        tests = tuple(getattr(task, self.options.tests_field))
        key = (task.task_id, tests, task.setup_code)
        plan = self._plans.get(key)
        if plan is None:
            plan = build_plan(task, self.options)
            self.forms.update(t.form for t in plan.tests)
            self._plans[key] = plan
            if len(self._plans) > self._plan_cache_size:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def limits_for(self, plan: _Plan) -> Limits:
        t = self.options.test_timeout_s
        total = t * (len(plan.tests) + 1) + 1.0
        return Limits(timeout_s=total, cpu_s=total, memory_bytes=self.options.memory_bytes,
                      max_output_bytes=self.options.max_output_bytes)

    def check(self, tasks: Mapping[str, RepairTask], samples: Iterable[Sample]) -> Iterator[Verdict]:
        """Yields one Verdict per sample, in order; raises UnknownTaskError for a bad task_id."""
        # (sample, plan, verdict): verdict is None for samples whose run is still to come.
        queue: "collections.deque[tuple]" = collections.deque()

        def jobs():
            for sample in samples:
                task = tasks.get(sample.task_id)
                if task is None:
                    raise UnknownTaskError(
                        f"sample {sample.sample_id!r}: task_id {sample.task_id!r} is not among the tasks")
                plan = self.plan(task)
                verdict, fix_code = _precheck(sample, plan)
                queue.append((sample, plan, verdict))
                if verdict is None:
                    payload = {"program": list(plan.before_fix) + [fix_code] + list(plan.after_fix),
                               "tests": [t.code for t in plan.tests],
                               "timeout": self.options.test_timeout_s}
                    yield payload, self.limits_for(plan)

        results = self.pool.map_each(harness.TARGET, jobs())
        while True:
            while queue and queue[0][2] is not None:
                yield queue.popleft()[2]
            if not queue:
                try:
                    result = next(results)
                except StopIteration:
                    while queue:  # only verdicts decided without a run can be left
                        yield queue.popleft()[2]
                    return
                while queue[0][2] is not None:
                    yield queue.popleft()[2]
            else:
                result = next(results)
            sample, plan, _ = queue.popleft()
            yield judge(sample, plan, result, result.wall_s)

    def check_one(self, task: RepairTask, sample: Sample) -> Verdict:
        return next(self.check({task.task_id: task}, [sample]))


def _precheck(sample: Sample, plan: _Plan) -> Tuple[Optional[Verdict], bytes]:
    n = len(plan.tests)
    if plan.broken:
        return _verdict(sample, "error", 0, n, plan.broken), b""
    if sample.fix is None:
        return _verdict(sample, "no_code", 0, n, "the sample has no fix"), b""
    try:
        return None, _compile(sample.fix, "<fix>")
    except SyntaxError as e:
        return _verdict(sample, "syntax_error", 0, n, f"{e.__class__.__name__}: {e}"), b""
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:
        return _verdict(sample, "syntax_error", 0, n, f"{e.__class__.__name__}: {e}"), b""


def _verdict(sample: Sample, status: str, passed: int, total: int, detail: str, wall: float = 0.0) -> Verdict:
    return Verdict(task_id=sample.task_id, sample_id=sample.sample_id, status=status,
                   tests_passed=passed, tests_total=total, detail=detail[:DETAIL_CHARS],
                   wall_s=round(wall, 6))


class _ProtocolError(Exception):
    pass


def _sandbox_outcome(result: SandboxResult) -> Tuple[str, str]:
    """How a child that stopped reporting ended, as a verdict outcome."""
    if result.status == "timeout":
        return "timeout", f"timed out ({result.detail})"
    if result.status == "crash":
        return "error", f"the child crashed: {result.detail}"
    if result.status == "memory":
        return "error", "out of memory"
    return "error", result.detail.strip().rsplit("\n", 1)[-1] or "the child ended without reporting"


def judge(sample: Sample, plan: _Plan, result: SandboxResult, wall: float) -> Verdict:
    """Decides the verdict from the child's reports; see the module doc for the rules."""
    n = len(plan.tests)
    try:
        program, outcomes = _replay(plan, result.messages)
    except _ProtocolError as e:
        return _verdict(sample, "error", 0, n, f"protocol violation from the child: {e}", wall)
    passed = sum(1 for o in outcomes if o[0] == "pass")
    if program is None:
        status, detail = _sandbox_outcome(result)
        return _verdict(sample, status, 0, n, f"program: {detail}", wall)
    if program[0] != "ok":
        status = "timeout" if program[0] == "timeout" else "error"
        return _verdict(sample, status, 0, n, f"program: {program[1]}", wall)
    for i, (outcome, detail) in enumerate(outcomes):
        if outcome == "running":
            if result.status == "ok":
                return _verdict(sample, "error", passed, n, f"test {i}: never finished", wall)
            status, why = _sandbox_outcome(result)
            return _verdict(sample, status, passed, n, f"test {i}: {why}", wall)
        if outcome != "pass":
            return _verdict(sample, outcome, passed, n, f"test {i}: {detail}", wall)
    if len(outcomes) < n:
        # A test was not reached although the previous one finished: the child stopped early.
        status, why = _sandbox_outcome(result) if result.status != "ok" else ("error", "tests not run")
        return _verdict(sample, status, passed, n, f"test {len(outcomes)}: {why}", wall)
    if result.status != "ok":
        status, why = _sandbox_outcome(result)
        return _verdict(sample, "error", passed, n, f"all tests finished but the child then failed: {why}", wall)
    return _verdict(sample, "pass", passed, n, "", wall)


def _replay(plan: _Plan, messages: list):
    """Checks the message grammar and evaluates every assert report in the parent."""
    program = None
    outcomes: List[list] = []  # per started test: [outcome, detail]; 'running' until it ends
    current: Optional[int] = None
    reported: set = set()
    first_bad: Optional[Tuple[str, str]] = None
    for batch in messages:
        if type(batch) is not list:
            raise _ProtocolError("malformed report batch")
        for m in batch:
            program, current, reported, first_bad = _replay_one(
                plan, m, program, outcomes, current, reported, first_bad)
    if current is not None and first_bad is not None:
        outcomes[current] = list(first_bad)  # a failed assert decides even if the test then hung
    return program, outcomes


def _replay_one(plan, m, program, outcomes, current, reported, first_bad):
    if type(m) is not tuple or not m or type(m[0]) is not str:
        raise _ProtocolError("malformed message")
    tag = m[0]
    if program is None:
        if tag != "p" or len(m) != 3 or m[1] not in ("ok", "fail", "error", "timeout") or type(m[2]) is not str:
            raise _ProtocolError("expected the program report first")
        return (m[1], m[2]), current, reported, first_bad
    if program[0] != "ok":
        raise _ProtocolError("message after a failed program")
    if tag == "s":
        if current is not None or m != ("s", len(outcomes)) or len(outcomes) >= len(plan.tests):
            raise _ProtocolError(f"unexpected test start {m[1:]!r}")
        current, reported, first_bad = len(outcomes), set(), None
        outcomes.append(["running", ""])
    elif tag == "a":
        if current is None or len(m) != 3 or type(m[1]) is not int or m[1] not in plan.tests[current].sites:
            raise _ProtocolError("assert report outside its test")
        values = m[2]
        if type(values) is not list or not all(
                type(v) is tuple and len(v) == 2 and v[0] in ("v", "e", "n") for v in values):
            raise _ProtocolError("malformed assert report")
        reported.add(m[1])
        if first_bad is None:
            outcome, detail = plan.sites.evaluate(m[1], values)
            if outcome != "pass":
                first_bad = (outcome, detail)
    elif tag in ("d", "x"):
        if current is None or len(m) < 2 or m[1] != current:
            raise _ProtocolError(f"unexpected end of test {m[1:2]!r}")
        if tag == "x" and (len(m) != 4 or m[2] not in ("fail", "error", "timeout") or type(m[3]) is not str):
            raise _ProtocolError("malformed test exception report")
        missing = [s for s in plan.tests[current].sites
                   if plan.sites.sites[s].required and s not in reported]
        if first_bad is not None:
            outcomes[current] = list(first_bad)
        elif tag == "x":
            outcomes[current] = [m[2], m[3]]
        elif missing:
            site = plan.sites.sites[missing[0]]
            outcomes[current] = ["fail", f"assert never ran: {site.source}"]
        else:
            outcomes[current] = ["pass", ""]
        current = None
    else:
        raise _ProtocolError(f"unknown message tag {tag[:10]!r}")
    return program, current, reported, first_bad


def check_samples(tasks: Mapping[str, RepairTask], samples: Iterable[Sample], *,
                  workers: Optional[int] = None, options: CheckOptions = CheckOptions()) -> List[Verdict]:
    """One-shot convenience: starts a pool, checks every sample, closes the pool."""
    with Checker(workers=workers, options=options) as checker:
        return list(checker.check(tasks, samples))


def tasks_by_id(tasks: Iterable[RepairTask]) -> Dict[str, RepairTask]:
    out: Dict[str, RepairTask] = {}
    for t in tasks:
        if t.task_id in out:
            raise ValueError(f"duplicate task_id {t.task_id!r}")
        out[t.task_id] = t
    return out
