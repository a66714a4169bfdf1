"""Command line: trace one program, or a whole RepairTask file.

    python -m next_jax.tracing --program FILE.py --test "assert f(1) == 2"
        prints the traced program and test line (one block per --test; --test may repeat)
    python -m next_jax.tracing --tasks TASKS.jsonl --out TRACED.jsonl [--workers N] [--beam]
        writes one TracedTask per RepairTask (JSON Lines)

Programs run in the sandbox. ``--no_sandbox`` runs them in this process and is only for code you
trust. Exit status: 0 done, 2 bad arguments or input (the message names file:line and field).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from absl import logging

from next_jax.data.records import RecordError
from next_jax.tracing.budget import fit_traces
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.sandboxed import trace_program


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m next_jax.tracing", description=__doc__.split("\n\n")[0])
    one = p.add_argument_group("one program")
    one.add_argument("--program", help="Python file with the program to trace")
    one.add_argument("--test", action="append", default=[], help="test statement (repeatable)")
    one.add_argument("--setup", default="", help="code run before the test, untraced")
    one.add_argument("--json", action="store_true", help="print the recorder's data as JSON too")
    many = p.add_argument_group("a task file")
    many.add_argument("--tasks", help="RepairTask JSON Lines file")
    many.add_argument("--out", help="TracedTask JSON Lines file to write")
    many.add_argument("--workers", type=int, default=1, help="sandbox workers")
    many.add_argument("--beam", action="store_true", help="run as an Apache Beam pipeline")
    many.add_argument("--pipeline_args", default="--runner=DirectRunner",
                      help="Beam pipeline options (one string, space separated)")
    cfg = p.add_argument_group("trace format and limits")
    defaults = TraceConfig()
    cfg.add_argument("--max_value_chars", type=int, default=defaults.max_value_chars)
    cfg.add_argument("--max_events", type=int, default=defaults.max_events)
    cfg.add_argument("--max_seconds", type=float, default=defaults.max_seconds)
    cfg.add_argument("--head_visits", type=int, default=defaults.head_visits)
    cfg.add_argument("--min_hidden_visits", type=int, default=defaults.min_hidden_visits)
    cfg.add_argument("--budget", type=int, default=None,
                     help="total characters of all traces of one task (drops later tests first)")
    cfg.add_argument("--no_sandbox", action="store_true",
                     help="run the program in this process (trusted code only)")
    return p


def _config(args) -> TraceConfig:
    return TraceConfig(max_value_chars=args.max_value_chars, max_events=args.max_events,
                       max_seconds=args.max_seconds, head_visits=args.head_visits,
                       min_hidden_visits=args.min_hidden_visits)


def _trace_one(args, config: TraceConfig) -> int:
    try:
        with open(args.program, encoding="utf-8") as f:
            program = f.read()
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
    if args.beam:
        from next_jax.tracing.beam import trace_file_with_beam  # Beam is slow to import
        count = trace_file_with_beam(args.tasks, args.out, config, budget=args.budget,
                             pipeline_args=args.pipeline_args.split())
        logging.info("traced %d tasks into %s", count, args.out)
        return 0
    from next_jax.tracing.traced_tasks import trace_file
    counts = trace_file(args.tasks, args.out, config, workers=args.workers, budget=args.budget)
    print(json.dumps(counts))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
