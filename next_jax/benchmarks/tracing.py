"""Benchmark of the next_jax tracer against untraced runs and other Python tracers.

    python -m next_jax.benchmarks.tracing --mbpp=PATH/mbpp.jsonl --skip_slow_baselines

Programs: a loop summing 10,000 ints, recursive fibonacci(20), string processing over 2,000
words, and five MBPP reference solutions (read from ``--mbpp``; skipped, and said so, when the
file is absent) on inputs this benchmark scales up, since their own tests finish in ~40 us and
would only measure start-up. That start-up (compile, source analysis, set-up and finish of one
traced run) is reported on its own, as ``startup``: the MBPP solutions on their own first test,
untraced, traced and with the bare recorder; it is not part of the ratios.

Tracers, all run in this process on the same program and test: none (untraced), next_jax's
recorder (``record``: analysis, compile, run and finish included), a bare ``sys.settrace``
recorder that appends ``repr(frame.f_locals)`` on every line event, and pysnooper and snoop
decorating the entry function and writing to a null sink.

Every timed run is end to end: compile and run the program's module code, run the setup (which
builds the inputs), run the test. Times are CPU seconds of this process (``time.process_time``),
so other work on the machine disturbs them less than wall time; each traced run's result is
checked against the untraced one. Also reported: the wall time of tracing each program through a
warm one-worker sandbox pool (the production path), and of an empty job there; while the sandbox
workers hash strings randomly, that includes starting a fixed-hash interpreter per trace
(``rerun_for_fixed_hashing``, see ``next_jax.tracing.record_run.record_payload``).

Prints one JSON line: per program the time of each tracer and its slowdown over untraced, then
``max_slowdown`` (next_jax, worst program; target <= 100), ``ratio_vs_bare_min`` (bare time over
next_jax time, worst program; target >= 1) and ``ratio_vs_pysnooper`` (total pysnooper time over
total next_jax time; target >= 5), and ``endless_program``: the cost of tracing a program that
never ends with the default settings (about its test timeout, ``TraceConfig.timeout_s``).
``--programs``, ``--baselines``, ``--nosandbox`` and ``--noendless`` narrow the run. Progress goes
to stderr.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, Tuple

from absl import app, flags

from next_jax.execution.sandbox import SandboxPool
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.record_run import record
from next_jax.tracing.sandboxed import TARGET, TraceJob, sandbox_limits
from next_jax.tracing.settrace_hooks import PROGRAM_FILE, SETUP_FILE, TEST_FILE
from next_jax.tracing.values import ValueRenderer

Program = Tuple[str, str, str, str]  # (program, test expression, setup, entry function)

LOOP = '''def loop_sum(xs):
    total = 0
    for x in xs:
        total += x
    return total
'''

FIB = '''def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)
'''

WORDS = '''def word_stats(words):
    counts = {}
    for word in words:
        w = word.strip().lower()
        if not w.isalpha():
            continue
        counts[w] = counts.get(w, 0) + 1
    backwards = [w[::-1].upper() for w in counts]
    return ' '.join(backwards[:20]), len(counts)
'''

WORDS_SETUP = '''import random as _r
_g = _r.Random(7)
_letters = 'abcdefghijklmnopqrstuvwxyz'
WORDS = [' ' + ''.join(_g.choice(_letters) for _ in range(_g.randint(2, 6))).title()
         + ('!' if i % 9 == 0 else '') + ' ' for i in range(2000)]
'''

# MBPP solutions on inputs scaled up by this benchmark (their own tests run for ~40 us, so they
# would measure start-up, not tracing; that is reported separately, as ``startup``).
MBPP_SCALED = {
    57: ("ARR = [i % 10 for i in range(300)]", "find_Max_Num(ARR, 300)"),
    117: ("PAIRS = [(str(i), str(i * 1.5)) for i in range(500)]", "list_to_float(PAIRS)"),
    130: ("NUMS = [i * 7 % 97 for i in range(5000)]", "max_occurrences(NUMS)"),
    300: ("", "count_binary_seq(300)"),
    500: ("WORDS = ['w%d' % i for i in range(2000)]", "concatenate_elements(WORDS)"),
}
DEFAULT_MBPP = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "mbpp",
                            "mbpp.jsonl")


def programs(mbpp_path: str) -> Tuple[Dict[str, Program], Dict[str, Program]]:
    """The timed programs, and the MBPP solutions on their own first test (start-up cost)."""
    out = {
        "loop_sum": (LOOP, "loop_sum(DATA)", "DATA = list(range(10000))", "loop_sum"),
        "fib20": (FIB, "fib(20)", "", "fib"),
        "word_stats": (WORDS, "word_stats(WORDS)", WORDS_SETUP, "word_stats"),
    }
    startup = {}
    if not os.path.exists(mbpp_path):
        print(f"MBPP file not found at {mbpp_path}: MBPP programs skipped", file=sys.stderr)
        return out, startup
    with open(mbpp_path, encoding="utf-8") as f:
        rows = {r["task_id"]: r for r in map(json.loads, filter(str.strip, f))}
    for task_id, (setup, call) in MBPP_SCALED.items():
        row = rows[task_id]
        entry = call.split("(")[0]
        out[f"mbpp_{task_id}"] = (row["code"], call, setup, entry)
        test = row["test_list"][0].strip()
        own_call = test[len("assert "):].split("==")[0].strip()
        startup[f"mbpp_{task_id}"] = (row["code"], own_call, row.get("test_setup_code") or "", entry)
    return out, startup


# ----------------------------------------------------------------------------------------------
# The tracers. Each takes a Program and returns the test's value (checked against untraced).


class _NullSink:
    def __init__(self):
        self.chars = 0

    def write(self, text):
        self.chars += len(text)

    def flush(self):
        pass


def _prepare(program: Program) -> Tuple[dict, object]:
    source, test, setup, _ = program
    namespace = {"__name__": "program"}
    exec(compile(source, PROGRAM_FILE, "exec"), namespace)
    if setup:
        exec(compile(setup, SETUP_FILE, "exec"), namespace)
    return namespace, compile(test, TEST_FILE, "eval")


def run_untraced(program: Program):
    namespace, test = _prepare(program)
    return eval(test, namespace)


def run_next_jax(program: Program):
    source, test, setup, _ = program
    data = record(source, test, setup)
    if data["outcome"] != "pass" or data["stopped"]:
        raise RuntimeError(f"next_jax trace did not finish: {data['outcome']} {data['stopped']}")
    return data["returns"][-1], data["steps"]


def run_bare(program: Program):
    namespace, test = _prepare(program)
    rows = []

    def local(frame, event, arg):
        if event == "line":
            rows.append((frame.f_lineno, repr(frame.f_locals)))
        return local

    def global_trace(frame, event, arg):
        return local if frame.f_code.co_filename == PROGRAM_FILE else None

    sys.settrace(global_trace)
    try:
        return eval(test, namespace)
    finally:
        sys.settrace(None)


def _decorated(program: Program, decorate: Callable):
    namespace, test = _prepare(program)
    entry = program[3]
    calling = dict(namespace)
    calling[entry] = decorate(namespace[entry])  # inner calls keep the original: followed by code
    return eval(test, calling)


def run_pysnooper(program: Program):
    import pysnooper

    return _decorated(program, pysnooper.snoop(output=_NullSink(), color=False))


def run_snoop(program: Program):
    import snoop

    return _decorated(program, snoop.Config(out=_NullSink(), color=False).snoop)


# ----------------------------------------------------------------------------------------------


def _cpu(fn, *args):
    t0 = time.process_time()
    value = fn(*args)
    return time.process_time() - t0, value


def _median_time(fn, arg, min_runs: int, min_total: float = 0.3, max_runs: int = 200):
    times, value = [], None
    while len(times) < min_runs or (sum(times) < min_total and len(times) < max_runs):
        t, value = _cpu(fn, arg)
        times.append(t)
    return statistics.median(times), value


def _sandboxed(progs: Dict[str, Program]) -> dict:
    config = TraceConfig()
    out = {}
    rerun = False
    with SandboxPool(workers=1, targets=[TARGET]) as pool:
        jobs = {"empty_job": ("def f():\n    return 1\n", "f()", "")}
        jobs.update({name: (p[0], p[1], p[2]) for name, p in progs.items()})
        for name, (source, test, setup) in jobs.items():
            payload = TraceJob(source, test, setup).payload(config)
            walls = []
            for _ in range(3):
                t0 = time.perf_counter()
                result = pool.run(TARGET, payload, sandbox_limits(config))
                walls.append(time.perf_counter() - t0)
                if not result.ok:
                    raise RuntimeError(f"sandboxed trace of {name} failed: {result.status} "
                                       f"{result.detail}")
                rerun = rerun or bool(result.value.get("rerun_for_fixed_hashing"))
            out[name] = round(statistics.median(walls) * 1e3, 2)
    # True while sandbox workers hash randomly: each trace then starts a fresh interpreter.
    out["rerun_for_fixed_hashing"] = rerun
    return out


def _startup(progs: Dict[str, Program]) -> dict:
    """Fixed cost per traced run, on programs too small for anything else to show."""
    out = {}
    for name, program in progs.items():
        untraced, _ = _median_time(run_untraced, program, min_runs=21)
        ours, _ = _median_time(run_next_jax, program, min_runs=21)
        bare, _ = _median_time(run_bare, program, min_runs=21)
        out[name] = {"untraced_ms": round(untraced * 1e3, 4), "next_jax_ms": round(ours * 1e3, 4),
                     "bare_settrace_ms": round(bare * 1e3, 4)}
    return out


BASELINES = {"bare_settrace": run_bare, "pysnooper": run_pysnooper, "snoop": run_snoop}
ENDLESS = ("def spin():\n    i = 0\n    while True:\n        i += 1\n", "spin()")


def _define_flags() -> None:
    flags.DEFINE_string("mbpp", DEFAULT_MBPP, "mbpp.jsonl (its programs are skipped, and said so, when absent).")
    flags.DEFINE_list("programs", None, "Only these programs (default: all).")
    flags.DEFINE_list("baselines", list(BASELINES), f"Tracers to compare with, of {list(BASELINES)}.")
    flags.register_validator("baselines", lambda names: set(names) <= set(BASELINES),
                             f"--baselines: each must be one of {list(BASELINES)}")
    flags.DEFINE_bool("skip_slow_baselines", False,
                      "Skip baselines on loop_sum (each takes seconds); ratios then cover fewer programs.")
    flags.DEFINE_bool("sandbox", True, "Also time traces through a warm sandbox pool.")
    flags.DEFINE_bool("endless", True, "Also time an endless program with the default TraceConfig.")


def _endless() -> dict:
    """Cost of tracing a program that never ends: about its test timeout, by design."""
    config = TraceConfig()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    data = record(ENDLESS[0], ENDLESS[1], "", config)
    return {"timeout_s": config.timeout_s, "cpu_s": round(time.process_time() - cpu0, 2),
            "wall_s": round(time.perf_counter() - wall0, 2), "outcome": data["outcome"],
            "stopped": data["stopped"]}


def _main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    args = flags.FLAGS
    renderer = ValueRenderer(100)
    progs, startup_progs = programs(args.mbpp)
    if args.programs is not None:
        missing = sorted(set(args.programs) - set(progs))
        if missing:
            raise app.UsageError(f"--programs: unknown {missing}; known: {list(progs)}")
        progs = {name: p for name, p in progs.items() if name in args.programs}
    results = {}
    for name, program in progs.items():
        print(f"[tracing benchmark] {name}", file=sys.stderr, flush=True)
        untraced, expected = _median_time(run_untraced, program, min_runs=11)
        expected_text = renderer.render(expected)
        ours, (value_text, steps) = _median_time(run_next_jax, program, min_runs=5, min_total=1.0,
                                                 max_runs=9)
        if value_text != expected_text:
            raise RuntimeError(f"{name}: next_jax traced value {value_text} "
                               f"!= untraced {expected_text}")
        row = {"untraced_ms": round(untraced * 1e3, 4), "steps": steps,
               "ms": {"next_jax": round(ours * 1e3, 3)}}
        for tracer in args.baselines:
            if args.skip_slow_baselines and name == "loop_sum":
                continue
            t, value = _cpu(BASELINES[tracer], program)
            if t < 1.0:  # fast enough to repeat: median of 3
                t = statistics.median([t] + [_cpu(BASELINES[tracer], program)[0] for _ in range(2)])
            if renderer.render(value) != expected_text:
                raise RuntimeError(f"{name}: {tracer} returned {value!r}")
            row["ms"][tracer] = round(t * 1e3, 3)
        row["slowdown"] = {k: round(v / row["untraced_ms"], 2) for k, v in row["ms"].items()}
        results[name] = row
        print(f"[tracing benchmark] {name}: {json.dumps(row)}", file=sys.stderr, flush=True)

    out = {
        "benchmark": "tracing",
        "python": sys.version.split()[0],
        "timer": "process CPU time, in-process, end to end (compile + module code + setup + test)",
        "programs": results,
    }
    if results:
        worst = max(results, key=lambda n: results[n]["slowdown"]["next_jax"])
        out["max_slowdown"] = results[worst]["slowdown"]["next_jax"]
        out["max_slowdown_program"] = worst
    bare_ratios = {n: r["ms"]["bare_settrace"] / r["ms"]["next_jax"] for n, r in results.items()
                   if "bare_settrace" in r["ms"]}
    if bare_ratios:
        out["ratio_vs_bare_min"] = round(min(bare_ratios.values()), 2)
        out["ratio_vs_bare_min_program"] = min(bare_ratios, key=bare_ratios.get)
    for tracer in ("pysnooper", "snoop"):
        rows = [r for r in results.values() if tracer in r["ms"]]
        if rows:
            out[f"ratio_vs_{tracer}"] = round(sum(r["ms"][tracer] for r in rows)
                                              / sum(r["ms"]["next_jax"] for r in rows), 2)
    out["startup"] = _startup(startup_progs)
    if args.sandbox:
        print("[tracing benchmark] sandboxed runs", file=sys.stderr, flush=True)
        out["sandboxed_wall_ms"] = _sandboxed(progs)
    if args.endless:
        print("[tracing benchmark] endless program", file=sys.stderr, flush=True)
        out["endless_program"] = _endless()
    targets = {"max_slowdown<=100": ("max_slowdown", lambda v: v <= 100),
               "ratio_vs_bare_min>=1": ("ratio_vs_bare_min", lambda v: v >= 1),
               "ratio_vs_pysnooper>=5": ("ratio_vs_pysnooper", lambda v: v >= 5)}
    out["targets_met"] = {name: ok(out[key]) for name, (key, ok) in targets.items() if key in out}
    print(json.dumps(out))
    return 0


def main(argv=None) -> None:
    _define_flags()
    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
