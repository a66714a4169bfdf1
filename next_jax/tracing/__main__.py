"""Command line: trace one program, or a whole RepairTask file.

    python -m next_jax.tracing --program=FILE.py --test="assert f(1) == 2"
        prints the traced program and test line (one block per --test; --test may repeat)
    python -m next_jax.tracing --tasks=TASKS.jsonl --out=TRACED.jsonl --workers=2
        writes one TracedTask per RepairTask (JSON Lines); --beam runs it as a Beam pipeline

Programs run in the sandbox. ``--no_sandbox`` runs them in this process and is only for code you
trust. Exit status: 0 done, 1 a flag absl cannot parse, 2 bad arguments or input (the message
names file:line and field). ``--helpfull`` lists every flag.
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

from absl import app, flags, logging

from next_jax import io as nj_io
from next_jax.data.records import RecordError
from next_jax.tracing.budget import fit_traces
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.sandboxed import trace_program
from next_jax import startup_log


def _define_flags() -> None:
    defaults = TraceConfig()
    # One program.
    flags.DEFINE_string("program", None, "Python file with the program to trace.")
    flags.DEFINE_multi_string("test", [], "Test statement (repeatable).")
    flags.DEFINE_string("setup", "", "Code run before the test, untraced.")
    flags.DEFINE_bool("json", False, "Print the recorder's data as JSON too.")
    # A task file.
    flags.DEFINE_string("tasks", None, "RepairTask JSON Lines file.")
    flags.DEFINE_string("out", None, "TracedTask JSON Lines file to write.")
    flags.DEFINE_integer("workers", 1, "Sandbox workers.")
    flags.DEFINE_bool("beam", False, "Run as an Apache Beam pipeline.")
    flags.DEFINE_string("pipeline_args", "--runner=DirectRunner", "Beam pipeline options (space separated).")
    # Trace format and limits (TraceConfig).
    flags.DEFINE_integer("max_value_chars", defaults.max_value_chars, "Cap on one value's text.")
    flags.DEFINE_integer("max_events", defaults.max_events, "Trace events before a run is stopped.")
    flags.DEFINE_float("max_seconds", defaults.max_seconds, "CPU seconds before a traced run is stopped.")
    flags.DEFINE_float("timeout_s", defaults.timeout_s, "Test timeout of the untraced run (0: none).")
    flags.DEFINE_integer("timeout_events", defaults.timeout_events,
                         "Trace events kept of a run that outlives --timeout_s.")
    flags.DEFINE_integer("head_visits", defaults.head_visits, "First visits a trace comment shows.")
    flags.DEFINE_integer("min_hidden_visits", defaults.min_hidden_visits, "Fewest visits '...;' may stand for.")
    flags.DEFINE_integer("budget", None, "Total characters of all traces of one task (drops later tests first).")
    flags.DEFINE_bool("no_sandbox", False, "Run the program in this process (trusted code only).")


def _config(args) -> TraceConfig:
    return TraceConfig(max_value_chars=args.max_value_chars, max_events=args.max_events,
                       max_seconds=args.max_seconds, timeout_s=args.timeout_s or None,
                       timeout_events=args.timeout_events, head_visits=args.head_visits,
                       min_hidden_visits=args.min_hidden_visits)


def _trace_one(args, config: TraceConfig) -> int:
    try:
        program = nj_io.read_text(args.program)
    except OSError as e:
        print(f"--program: cannot read {args.program}: {e.strerror}", file=sys.stderr)
        return 2
    if not args.test:
        print("--program needs at least one --test", file=sys.stderr)
        return 2
    datas = trace_program(program, args.test, args.setup, config, sandbox=not args.no_sandbox)
    fitted = fit_traces(program, args.test, datas, config, args.budget)
    blocks = []
    for data, (text, truncated) in zip(datas, fitted):
        block = text
        if args.json:
            block += "\n" + json.dumps(data, ensure_ascii=False)
        if truncated and not text:
            block = "# (trace left out: over --budget)"
        blocks.append(block)
    print("\n\n".join(blocks))
    return 0


def _trace_file(args, config: TraceConfig) -> int:
    if not args.out:
        print("--tasks needs --out", file=sys.stderr)
        return 2
    from next_jax.data.records import require_records

    require_records(args.tasks, "tasks file", "give --tasks a RepairTask JSON Lines file with at least one task")
    if args.beam:
        from next_jax.tracing.beam_traces import trace_file_with_beam  # Beam is slow to import
        count = trace_file_with_beam(args.tasks, args.out, config, budget=args.budget,
                                     pipeline_args=args.pipeline_args.split())
        logging.info("traced %d tasks into %s", count, args.out)
        return 0
    from next_jax.tracing.traced_tasks import trace_file
    counts = trace_file(args.tasks, args.out, config, workers=args.workers, budget=args.budget)
    print(json.dumps(counts))
    return 0


def _main(argv: List[str]) -> int:
    if len(argv) > 1:
        print(f"unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
        return 2
    args = flags.FLAGS
    logging.set_verbosity(logging.INFO)
    try:
        config = _config(args)
    except ValueError as e:
        print(f"bad trace settings: {e}", file=sys.stderr)
        return 2
    if bool(args.program) == bool(args.tasks):
        print("give exactly one of --program or --tasks", file=sys.stderr)
        return 2
    try:
        if args.program:
            return _trace_one(args, config)
        return _trace_file(args, config)
    except (RecordError, FileNotFoundError) as e:
        print(str(e), file=sys.stderr)
        return 2


def main(argv: Optional[List[str]] = None) -> None:
    startup_log.quiet_startup()  # first: TensorFlow's native libraries and Beam print warnings as they load
    _define_flags()
    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
