"""Checks samples' fixes against their tasks' tests and returns one Verdict per sample.

Built on ``SandboxPool`` judged runs: for each sample a judge process runs the task's tests
with real Python (``judge``) and a separate candidate process runs the program alone and only
answers the judge's calls (``candidate``). The candidate never holds a test or an expected value
and cannot reach the judge, so nothing it does in its process can turn a failing test into a
pass. Verdict statuses (``records.VERDICT_STATUSES``):

  no_code       the sample has no fix (``fix: null``)
  syntax_error  the fix does not compile
  pass          the program loaded and every test ran to its end in the judge
  fail          the first test that did not pass raised AssertionError
  error         the program or the first non-passing test raised anything else, the candidate
                died, broke the protocol, sent what is not plain data, or a test used one of its
                opaque objects in a comparison, a hash or ``in``
  timeout       the program or the first non-passing test ran past the per-test timeout

The candidate's program is: the setup code's top-level imports, the fix, then the whole setup
code (the fix may use what the setup defines, as it would in one module; the imports go first so
the fix can rely on them). Nothing it defines takes part in judging it but the entry point: the
tests' namespace in the judge (``judge.test_namespace``) holds the judge's builtins, the task's
trusted program (reference fix, else original code, else a description that is code) when the
tests read a helper it defines, the candidate's entry point, and the setup code run again in the
judge (its objects cross to the candidate by value). Tests share that namespace and run in
order, each stopping at its first failing assert (as in Python); the first test that does not
pass decides the verdict and ends the run (the remaining tests are not run).
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import marshal
import warnings
from typing import Iterable, Iterator, List, Mapping, Optional, Tuple

from next_jax.data.records import RepairTask, Sample, Verdict
from next_jax.execution import judge
from next_jax.execution.sandbox import DEFAULT_PRELOAD, Limits, SandboxPool, SandboxResult
from next_jax.execution.stateless import stateless
from next_jax.execution.worker import CANDIDATE_TARGET, JUDGE_TARGET

DETAIL_CHARS = 1000


class UnknownTaskError(KeyError):
    """A sample names a task_id that is not among the tasks given to the checker."""


@dataclasses.dataclass(frozen=True)
class CheckConfig:
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

    tests: Tuple[bytes, ...] = ()  # marshalled code, compiled as f"<test {i}>"
    sources: Tuple[str, ...] = ()
    names: Tuple[str, ...] = ()  # the entry point: the only name the candidate's object is for
    before_fix: Tuple[bytes, ...] = ()  # the candidate's: the setup code's imports
    after_fix: Tuple[bytes, ...] = ()  # the candidate's: the setup code (its classes, globals)
    trusted: Tuple[bytes, ...] = ()  # the judge's: the task's trusted program, when tests need it
    setup: Tuple[bytes, ...] = ()  # the judge's: the setup code, whose values the tests read
    broken: str = ""  # why the task itself cannot be checked (tests or setup do not parse)
    stateless: bool = False  # its judge-side code cannot change the judge (``stateless``)


_STATELESS_GROUP = "stateless tasks"


def _compile(source, name: str) -> bytes:
    # A candidate's dubious code (``(r + 1)(x)``) is its own business: the compiler's
    # SyntaxWarnings about it would reach the host's stderr as if something here were wrong.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return marshal.dumps(compile(source, name, "exec", dont_inherit=True, optimize=0))


class _StrictEquality(ast.NodeTransformer):
    """``a == b`` / ``a != b`` -> the judge's type-exact equality (``strict_types``)."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) != 1 or not isinstance(node.ops[0], (ast.Eq, ast.NotEq)):
            return node
        call = ast.Call(func=ast.Name(judge.STRICT_EQ, ast.Load()),
                        args=[node.left, node.comparators[0]], keywords=[])
        out = call if isinstance(node.ops[0], ast.Eq) else ast.UnaryOp(ast.Not(), call)
        return ast.copy_location(out, node)


def first_import_statements(source: str) -> Optional[str]:
    """The top-level import statements of ``source`` (run before the fix), or None if none."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(ast.unparse(n) for n in imports) or None


def top_level_names(source: str) -> set:
    """Names a program binds at module level (definitions, assignments, imports), not those
    bound only inside its functions or classes."""
    names: set = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(child.name)
                continue  # its body binds its own names (decorators and defaults bind none)
            if isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                                  ast.GeneratorExp)):
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                names.add(child.id)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).partition(".")[0] for a in child.names)
            visit(child)

    visit(ast.parse(source))
    return names


def trusted_programs(task: RepairTask) -> Tuple[str, ...]:
    """Where the tests' helpers come from, first choice first: the reference fix, the original
    code, and the description when it is code (a HumanEval prompt: helpers and signature)."""
    return tuple(s for s in (task.reference_fix, task.buggy_code, task.description)
                 if s and s.strip())


def build_plan(task: RepairTask, options: CheckConfig) -> _Plan:
    sources = tuple(getattr(task, options.tests_field))
    tests, read = [], set()
    for i, source in enumerate(sources):
        try:
            tree = ast.parse(source, f"<test {i}>")
            read.update(n.id for n in ast.walk(tree)
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))
            if options.strict_types:
                tree = ast.fix_missing_locations(_StrictEquality().visit(tree))
            tests.append(_compile(tree, f"<test {i}>"))
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            return _Plan(broken=f"task {task.task_id}: a test does not compile: {e}")
    if not task.entry_point.isidentifier():
        return _Plan(broken=f"task {task.task_id}: entry_point {task.entry_point!r} is not a name")
    plan = _Plan(tests=tuple(tests), sources=sources, names=(task.entry_point,))
    if task.setup_code.strip():
        try:
            setup = _compile(task.setup_code, "<setup_code>")
            setup_tree = ast.parse(task.setup_code)
        except (SyntaxError, ValueError) as e:
            return _Plan(broken=f"task {task.task_id}: setup_code does not compile: {e}")
        plan.after_fix = plan.setup = (setup,)
        read.update(n.id for n in ast.walk(setup_tree)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))
        imports = first_import_statements(task.setup_code)
        if imports:
            plan.before_fix = (_compile(imports, "<setup_code imports>"),)
    # A trusted program runs in the judge only when the tests (or the setup code) read a name
    # it defines besides the entry point (most tasks' tests read nothing else of the program),
    # and only the first program that defines a name provides it: they run last choice first.
    wanted = read - {task.entry_point}
    trusted = []
    judge_side = list(sources) + [task.setup_code]  # all the code the judge runs
    for source in trusted_programs(task):
        if not wanted:
            break
        try:
            defined = top_level_names(source)
            code = _compile(source, "<trusted program>") if wanted & defined else None
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # a description in prose; a program that does not compile provides nothing
        if code is not None:
            trusted.append(code)
            judge_side.append(source)
            wanted -= defined
    plan.trusted = tuple(reversed(trusted))
    plan.stateless = stateless(judge_side)
    return plan


class Checker:
    """Turns (task, sample) pairs into Verdicts with a warm pool of sandbox workers."""

    def __init__(self, pool: Optional[SandboxPool] = None, *, workers: Optional[int] = None,
                 options: CheckConfig = CheckConfig(), plan_cache_size: int = 20000,
                 modules: Iterable[str] = (), preload: Iterable[str] = ()):
        self.options = options
        self._own_pool = pool is None
        self.pool = pool or SandboxPool(workers, preload=tuple(DEFAULT_PRELOAD) + tuple(preload))
        modules = tuple(modules) + tuple(preload)
        self._plans: "collections.OrderedDict[tuple, _Plan]" = collections.OrderedDict()
        self._plan_cache_size = plan_cache_size
        # Third-party modules the judge may import when the program's global names one (the
        # standard library always may); the preloaded ones of the pool's workers.
        self.modules = tuple(modules)

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
        key = (task.task_id, tests, task.setup_code, task.entry_point, trusted_programs(task))
        plan = self._plans.get(key)
        if plan is None:
            plan = build_plan(task, self.options)
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
                               "tests": list(plan.tests), "names": list(plan.names),
                               "trusted": list(plan.trusted), "setup": list(plan.setup),
                               "timeout": self.options.test_timeout_s,
                               "modules": list(self.modules)}
                    # Runs of tasks whose judge-side code provably changes nothing of the
                    # judge share one; every other run gets a judge that held nothing.
                    group = _STATELESS_GROUP if plan.stateless else None
                    yield payload, self.limits_for(plan), group

        results = self.pool.map_each(JUDGE_TARGET, jobs(), partner=CANDIDATE_TARGET)
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
            yield judge_verdict(sample, plan, result, result.wall_s)



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


def _sandbox_outcome(result: SandboxResult) -> Tuple[str, str]:
    """How a judge that stopped reporting ended, as a verdict outcome."""
    if result.status == "timeout":
        return "timeout", f"timed out ({result.detail})"
    if result.status == "crash":
        return "error", f"the judge crashed: {result.detail}"
    if result.status == "memory":
        return "error", "out of memory"
    return "error", result.detail.strip().rsplit("\n", 1)[-1] or "the judge ended without reporting"


def _line(plan: _Plan, i: int, line: int) -> str:
    lines = plan.sources[i].splitlines() if i < len(plan.sources) else []
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def judge_verdict(sample: Sample, plan: _Plan, result: SandboxResult, wall: float) -> Verdict:
    """Decides the verdict from the judge's reports (see the module doc)."""
    n = len(plan.tests)
    reports = result.messages
    candidate_end = f" (candidate {result.partner})" if result.partner else ""
    if not reports:
        status, detail = _sandbox_outcome(result)
        return _verdict(sample, status, 0, n, f"program: {detail}", wall)
    if result.partner == "memory":  # whatever the judge saw after that, the run broke its limit
        done = sum(1 for r in reports[1:] if type(r) is tuple and len(r) == 5 and r[2] == "pass")
        return _verdict(sample, "error", done, n, "the run's memory limit was reached "
                        "(a process of the candidate was killed)", wall)
    first = reports[0]
    if type(first) is not tuple or len(first) != 3 or first[0] != "p":
        return _verdict(sample, "error", 0, n, "malformed report from the judge", wall)
    if first[1] != "ok":
        status = "timeout" if first[1] == "timeout" else "error"
        return _verdict(sample, status, 0, n, f"program: {first[2]}{candidate_end}", wall)
    passed = 0
    for i, report in enumerate(reports[1:]):
        if type(report) is not tuple or len(report) != 5 or report[:2] != ("t", i):
            return _verdict(sample, "error", passed, n, "malformed report from the judge", wall)
        _, _, outcome, line, detail = report
        if outcome != "pass":
            where = _line(plan, i, line)
            text = f"test {i}: {where + ': ' if where else ''}{detail}"
            if outcome == "error":
                text += candidate_end
            return _verdict(sample, outcome, passed, n, text, wall)
        passed += 1
    if passed < n:  # the judge stopped in the middle of test `passed`
        status, why = _sandbox_outcome(result)
        return _verdict(sample, status, passed, n, f"test {passed}: {why}", wall)
    return _verdict(sample, "pass", passed, n, "", wall)
