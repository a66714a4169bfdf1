"""Records one program's execution on one test, as plain data (the pure core of tracing).

``record(program, test, setup_code, config)`` is a pure function of its inputs (given a fixed
``PYTHONHASHSEED``): it runs the program's module code, then ``setup_code`` (untraced), then the
test, all in one fresh namespace, with the hooks of :mod:`settrace_hooks` installed, and returns a dict
of builtin types that :mod:`render` turns into NExT's inline format. It runs untrusted code, so
production callers run it inside the sandbox through :func:`record_payload` (see
:mod:`next_jax.tracing.sandboxed`); tests and the benchmark call it in-process.

Around the run: the program's stdout/stderr go to a counting sink (never into the trace) and
stdin is empty; ``random`` (and numpy's global generator, if loaded) is seeded before the program
and again before the test; the recursion limit is raised by 100 frames for the tracer's own
frames (so a program may recurse up to 100 frames deeper than it could untraced); the caller's
``random`` state is restored afterwards. Before the traced run, the program and test run once
untraced under the test timeout (``TraceConfig.timeout_s``): one that does not finish is traced
only briefly (``timeout_events``), so an endless program costs about its test timeout.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import io
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Dict

from next_jax.tracing import analysis
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.settrace_hooks import (
    MODULE_NAME, PROGRAM_FILE, SETUP_FILE, TEST_FILE, Recorder, TraceStopped)
from next_jax.tracing.values import ValueRenderer, is_code_value, is_immutable


class _Sink(io.TextIOBase):
    """Swallows the program's output (and counts it), so it never reaches the trace."""

    def __init__(self):
        self.chars = 0

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        self.chars += len(text)
        return len(text)


def _syntax_error_result(error: SyntaxError, file_index: int, renderer: ValueRenderer) -> dict:
    line = error.lineno or 1
    text = f"SyntaxError({renderer.render(error.msg)})"
    return _result(
        lines=[[file_index, line, 1, [[0, [["__exception__", text]]]], [0, [["__exception__", text]]]]],
        steps=1,
        outcome="error",
        exception=text,
    )


def _result(*, lines, steps, outcome, exception=None, returns=(), stopped=None, marks=(),
            stdout_chars=0) -> dict:
    return {
        "lines": lines,
        "steps": steps,
        "outcome": outcome,
        "exception": exception,
        "returns": list(returns),
        "stopped": stopped,
        "marks": list(marks),
        "stdout_chars": stdout_chars,
        "python": "%d.%d" % sys.version_info[:2],
        # 0 when PYTHONHASHSEED fixed str/bytes hashing: only then do set orders repeat.
        "hash_randomization": int(sys.flags.hash_randomization),
    }


def _seed(seed: int) -> None:
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy.random.seed(seed)
        except Exception:  # pragma: no cover - a broken numpy must not break tracing
            pass


def _raised_in_test(error: BaseException) -> bool:
    tb = error.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename == TEST_FILE


@contextlib.contextmanager
def quiet_stdio():
    sink = _Sink()
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = sink, sink, io.StringIO("")
    try:
        yield sink
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved


def record(program: str, test: str, setup_code: str = "", config: TraceConfig = TraceConfig()) -> dict:
    """Runs ``program`` then ``test`` under the tracer; returns the trace as plain data.

    Keys: ``lines`` (``[file, line, visits, head_visits, last_visit]`` per commented line; file
    0 is the program, 1 the test; a visit is ``[step, [[name, value_text], ...]]``), ``steps``,
    ``outcome`` (pass | fail | error | timeout), ``exception`` (text of the exception that ended
    the run, if any), ``returns`` (value text of each call into the program made from outside
    it, in order), ``stopped``, ``marks``, ``stdout_chars``.
    """
    renderer = ValueRenderer(config.max_value_chars)
    try:
        program_facts = analysis.analyze_source(program)
        program_code = compile(program_facts.tree, PROGRAM_FILE, "exec", dont_inherit=True)
    except SyntaxError as e:
        return _syntax_error_result(e, 0, renderer)
    try:
        test_facts = analysis.analyze_source(test)
        test_code = compile(test_facts.tree, TEST_FILE, "exec", dont_inherit=True)
    except SyntaxError as e:
        return _syntax_error_result(e, 1, renderer)
    setup_compiled = compile(setup_code, SETUP_FILE, "exec", dont_inherit=True) if setup_code else None

    if _runs_past_timeout(program_code, setup_compiled, test_code, config):
        # It will not finish: a short deterministic trace of its start is all a reader needs.
        config = dataclasses.replace(config, max_events=min(config.max_events, config.timeout_events),
                                     max_seconds=min(config.max_seconds, config.timeout_s))
    rec = Recorder((program_facts, test_facts), config)
    namespace: Dict[str, Any] = {"__name__": MODULE_NAME, "__builtins__": builtins}
    outcome, exception = "pass", None
    old_limit = sys.getrecursionlimit()
    saved_random = random.getstate()
    tracer = rec.make_tracer()
    with quiet_stdio() as sink, _restop(rec):
        _seed(config.seed)
        rec.deadline = time.process_time() + config.max_seconds
        threading.settrace(rec.thread_trace)
        sys.setrecursionlimit(old_limit + 100)  # head room for the tracer's own frames
        try:
            sys.settrace(tracer)
            exec(program_code, namespace)
            sys.settrace(None)
            if setup_compiled is not None:
                exec(setup_compiled, namespace)
            _baseline_globals(rec, namespace)
            _seed(config.seed)
            sys.settrace(tracer)
            exec(test_code, namespace)
        except TraceStopped:
            outcome = "timeout"
        except BaseException as e:  # the program's failure is the trace's content
            if isinstance(e, KeyboardInterrupt):
                raise
            outcome = "fail" if isinstance(e, AssertionError) and _raised_in_test(e) else "error"
            exception = rec.renderer.render(e)
        finally:
            tracer_left = sys.gettrace()
            sys.settrace(None)
            threading.settrace(None)
            sys.setrecursionlimit(old_limit)
            random.setstate(saved_random)
    marks = list(program_facts.untraceable) + [
        m for m in test_facts.untraceable if m not in program_facts.untraceable]
    if outcome != "timeout" and tracer_left is not tracer:
        marks.append("the program replaced the trace function; later steps are missing")
    if rec.thread_marks:
        names = sorted(c.co_name for c in rec.thread_marks)
        marks.append("code ran on another thread and is not traced: " + ", ".join(names))
    if rec.faults:
        detail = ", ".join(f"{n} x{c}" for n, c in sorted(rec.faults.items()))
        marks.append(f"the tracer failed on some events ({detail}); their steps are missing")
    lines = rec.finish()
    return _result(
        lines=lines,
        steps=rec.steps(),
        outcome=outcome,
        exception=exception,
        returns=rec.returns,
        stopped=rec.stopped,
        marks=marks,
        stdout_chars=sink.chars,
    )


@contextlib.contextmanager
def _restop(rec: Recorder):
    """Raises the stop again, every 0.1 s, into a program that caught it and ran on untraced.

    A program that catches ``BaseException`` inside its loop would otherwise swallow the one
    ``TraceStopped`` the cap raises and run on until the sandbox kills it. Only on the main
    thread, where signals are delivered; nothing is raised before the cap is hit.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        if rec.stopped is not None and not done:
            raise TraceStopped(rec.stopped)

    done = False
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
    try:
        yield
    finally:
        done = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)


class _UntracedTimeout(BaseException):
    """Raised by the alarm into an untraced run that outlived the test timeout."""


def _runs_past_timeout(program_code, setup_code, test_code, config: TraceConfig) -> bool:
    """Whether the program and test, run untraced in a fresh namespace, outlive ``timeout_s``.

    Uses a wall-clock alarm, so only on the main thread (elsewhere: False, the caps alone apply).
    The alarm repeats until the run unwinds, so a program that catches the first one inside its
    loop is still stopped; the run's own result does not matter, only whether it ended in time.
    """
    if (config.timeout_s is None or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        return False
    state = {"armed": True, "fired": False}

    def on_alarm(signum, frame):
        if state["armed"]:
            state["fired"] = True
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            raise _UntracedTimeout()

    namespace: Dict[str, Any] = {"__name__": MODULE_NAME, "__builtins__": builtins}
    saved_random = random.getstate()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with quiet_stdio():
            try:
                signal.setitimer(signal.ITIMER_REAL, config.timeout_s)
                _seed(config.seed)
                exec(program_code, namespace)
                if setup_code is not None:
                    exec(setup_code, namespace)
                _seed(config.seed)
                exec(test_code, namespace)
            finally:
                state["armed"] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
    except KeyboardInterrupt:
        raise
    except BaseException:  # the program's own failure, or the alarm: only the time matters here
        pass
    finally:
        state["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        random.setstate(saved_random)
    return state["fired"]


def _baseline_globals(rec: Recorder, namespace: dict) -> None:
    """Known state of module-level data before the test, so only later changes are shown."""
    snap = rec.globals_snapshot
    for name, value in list(namespace.items()):
        if name.startswith("__") or name in snap or is_code_value(value):
            continue
        if is_immutable(value):
            snap[name] = (value, None)
        else:
            snap[name] = (value, rec.renderer.snapshot(value)[1])


def record_payload(payload: dict) -> dict:
    """Sandbox entry point (``next_jax.tracing.record_run:record_payload``): plain data in and out.

    Traces repeat byte for byte only when str/bytes hashing is fixed (set iteration order
    follows it). When this interpreter hashes randomly (its sandbox worker was not started with
    PYTHONHASHSEED=0), the recording runs in a fresh interpreter that is, at the cost of one
    interpreter start (tens of milliseconds).
    """
    if sys.flags.hash_randomization:
        return _record_with_fixed_hashing(payload)
    config = TraceConfig.from_dict(payload.get("config") or {})
    return record(payload["program"], payload["test"], payload.get("setup_code") or "", config)


_CHILD = (
    "import marshal, os, sys\n"
    "from next_jax.tracing.record_run import record_payload\n"
    "payload = marshal.loads(sys.stdin.buffer.read())\n"
    "os.write(int(sys.argv[1]), marshal.dumps(record_payload(payload)))\n"
)


def _record_with_fixed_hashing(payload: dict) -> dict:
    import marshal  # here, not at the top: the child interpreter below does not need them
    import subprocess

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"PYTHONHASHSEED": "0", "PYTHONPATH": package_root, "PATH": os.environ.get("PATH", ""),
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-S", "-c", _CHILD, str(write_end)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_end,), env=env)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        child.stdin.write(marshal.dumps(payload))
        child.stdin.close()
        data = reader.read()
    status = child.wait()
    if status != 0 or not data:
        raise RuntimeError(f"the fixed-hash recording process failed (exit status {status})")
    result = marshal.loads(data)
    result["rerun_for_fixed_hashing"] = True
    return result
