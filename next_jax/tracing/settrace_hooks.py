"""The ``sys.settrace`` hooks that record a program's execution (a whole run: :mod:`record_run`).

A :class:`Recorder` holds one run's state; :meth:`Recorder.make_tracer` builds the hooks and
:meth:`Recorder.finish` turns what they kept into plain data.

What is recorded (only frames whose code comes from the program or the test, never library
code; everything on one global 0-based step counter):

- function entry: the arguments, on the ``def`` line (skipped when there are none);
- after each executed line, the variables it created or changed, value-compared, in-place
  mutation included (which names a line can change is read from the source once, see
  :mod:`analysis`); several names changed by one line share one step;
- ``__return__`` on the line that returned; generators show ``__yield__`` on each ``yield`` and
  a final ``__return__`` only when it is not ``None``;
- ``__exception__`` on the line that raised, and again on the calling line of every traced frame
  the exception passes through (the test's ``assert`` line included); ``GeneratorExit`` is not
  shown.

Nested frames: a frame's steps go on its own source lines, so a call made on line L shows the
callee's steps on the callee's lines, interleaved by step number, and L's own change (e.g. the
variable that receives the result) comes after the callee's ``__return__``. Recursion and
repeated calls add visits to the same lines (the ``def`` line shows one visit per call, with its
arguments). Comprehensions and generator expressions are atomic: their loop variables are not shown (a
comprehension over 10,000 items would otherwise add 10,000 steps to one line, and Python 3.12
inlines them into the enclosing frame anyway); the enclosing line shows the value they build, and
an exception raised inside one is shown on its line. Lambdas show their arguments and ``__return__`` on
their line. Class bodies show their data attributes (not methods). Module-level names of the
program and the test are globals: a global changed inside a function (``global`` or in-place
mutation, e.g. a memo dict) is shown on the line that changed it, once.

Values that are code (functions, classes, modules) are never shown. Objects are shown with the
bounded renderer of :mod:`values`. Things the recorder cannot see get a visible mark instead of a
wrong value: ``__timeout__`` when the event or time cap stops the run, ``__untraced__`` when the
program replaced the trace function or code ran on another thread.
"""

from __future__ import annotations

import dis
import inspect
import time
import types
from typing import Any, Dict, List, Optional, Tuple

from next_jax.tracing import analysis
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.values import SCALAR_TYPES, ValueRenderer, is_code_value, is_immutable

PROGRAM_FILE = "<program>"
TEST_FILE = "<test>"
SETUP_FILE = "<setup>"
FILES = (PROGRAM_FILE, TEST_FILE)  # index in this tuple = file number in the trace data
MODULE_NAME = "program"  # not "__main__": a program's `if __name__ == "__main__":` block stays off

_RETURN_OPS = frozenset(dis.opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in dis.opmap)
_YIELD_OPS = frozenset(dis.opmap[n] for n in ("YIELD_VALUE",) if n in dis.opmap)
_RESUME = dis.opmap.get("RESUME", -1)
_CO_GENERATOR = inspect.CO_GENERATOR
_CO_COROUTINE = inspect.CO_COROUTINE
_CO_ASYNC_GENERATOR = inspect.CO_ASYNC_GENERATOR
_CO_VARARGS = inspect.CO_VARARGS
_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS
_CO_OPTIMIZED = inspect.CO_OPTIMIZED
_MISSING = object()
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})
_MAX_RETURNS = 1000


class TraceStopped(BaseException):
    """Raised into the program when a cap is hit; BaseException so ``except Exception`` misses it."""


class _CodeInfo:
    """What the recorder needs about one code object, computed on its first call."""

    __slots__ = (
        "table", "file", "remap", "entry_key", "arg_names", "free_names", "lines_on",
        "global_names", "show_entry", "show_return", "show_yield", "is_generator",
        "namespace", "module", "code_bytes", "is_program_function", "shared", "keys",
        "records_return", "entry_names", "single_scalar_entry", "entry_log", "fast",
    )


LINE_BITS = analysis.LINE_BITS
LINE_MASK = (1 << LINE_BITS) - 1


def _key(file_index: int, line: int) -> int:
    return (file_index << LINE_BITS) | line


class Recorder:
    """One traced run's state. Use :func:`record`; :meth:`make_tracer` builds the hooks.

    The hooks are closures over local variables rather than methods: they run on every traced
    event, and cell variables are cheaper to reach than attributes.
    """

    def __init__(self, facts: Tuple[analysis.SourceFacts, analysis.SourceFacts], config: TraceConfig):
        self.facts = facts
        self.config = config
        self.renderer = ValueRenderer(config.max_value_chars)
        self.logs: Dict[int, list] = {}
        self.infos: Dict[int, Any] = {}  # id(code) -> info: hashing code objects is slow
        self.codes: List[types.CodeType] = []  # keeps those ids valid
        self.globals_snapshot: Dict[str, tuple] = {}
        self.returns: List[str] = []
        self.stopped: Optional[str] = None
        self.faults: Dict[str, int] = {}
        self.thread_marks: set = set()
        self.deadline = float("inf")
        self.steps = lambda: 0  # replaced by make_tracer

    # -- set-up -----------------------------------------------------------------------------

    def _analyze(self, code: types.CodeType):
        try:
            file_index = FILES.index(code.co_filename)
        except ValueError:
            return False
        facts = self.facts[file_index]
        info = _CodeInfo()
        flags = code.co_flags
        name = code.co_name
        is_function = bool(flags & _CO_OPTIMIZED)  # functions, lambdas, comprehensions
        comprehension = name in _COMPREHENSIONS
        info.file = file_index
        info.remap = facts.comment_line
        info.module = not is_function and name == "<module>"
        info.namespace = not is_function
        info.is_generator = bool(flags & (_CO_GENERATOR | _CO_COROUTINE | _CO_ASYNC_GENERATOR))
        plain_generator = bool(flags & _CO_GENERATOR) and not comprehension
        info.show_entry = is_function and not comprehension
        info.show_return = is_function and not comprehension
        info.show_yield = plain_generator and self.config.show_yields
        # Frames that count as "inside the program" (a call made while none is running came
        # from the test or from library code called by it; its value goes to ``returns``).
        info.is_program_function = (file_index == 0 and (is_function or info.module)
                                    and not comprehension)
        # A generator's "return value" is the generator object, which the recorder never sees.
        info.records_return = info.is_program_function and is_function and not info.is_generator
        nargs = code.co_argcount + code.co_kwonlyargcount
        nargs += bool(flags & _CO_VARARGS) + bool(flags & _CO_VARKEYWORDS)
        info.arg_names = code.co_varnames[:nargs]
        info.free_names = code.co_freevars
        entry_line = facts.entry_line.get(code.co_firstlineno, code.co_firstlineno)
        info.entry_key = _key(file_index, facts.comment_line.get(entry_line, entry_line))
        info.code_bytes = code.co_code
        info.global_names = frozenset(code.co_names)
        extra = tuple(code.co_cellvars) + tuple(sorted(analysis.stored_globals(code)))
        table = {}
        for line in analysis.code_lines(code):
            line_facts = facts.lines.get(line)
            if line_facts is None:
                continue
            names = line_facts.names
            if line_facts.has_call and extra:
                names = names + tuple(n for n in extra if n not in names)
            if names:
                table[line] = (names, _key(file_index, facts.comment_line.get(line, line)))
        if comprehension:
            table = {}  # atomic: the enclosing line shows the result (see the module doc)
        info.table = table
        info.keys = {
            line: _key(file_index, facts.comment_line.get(line, line))
            for line in analysis.code_lines(code)
        }
        info.lines_on = not comprehension and (bool(table) or analysis.has_backward_jump(code))
        return info

    # -- the hooks ----------------------------------------------------------------------------

    def make_tracer(self):
        """Builds the ``sys.settrace`` hook for this run (call once per run)."""
        rec = self
        infos = self.infos
        infos_get = infos.get
        analyze = self._analyze
        logs = self.logs
        logs_get = logs.get
        head_cap = self.config.head_visits
        render = self.renderer.render
        gsnap = self.globals_snapshot
        returns = self.returns
        max_events = self.config.max_events
        missing = _MISSING
        scalars = SCALAR_TYPES
        snapshot = self.renderer.snapshot
        unchanged = self.renderer.unchanged
        return_ops, yield_ops = _RETURN_OPS, _YIELD_OPS
        step = 0
        events = 0
        depth = 0  # program-function frames on the stack: 0 after a return = called from outside
        thrown = set()  # ids of generator frames an exception was thrown into at a yield
        next_check = min(max_events, 4096)

        def steps():
            return step

        self.steps = steps

        def record_step(key, items):
            nonlocal step
            visit = (step, items)
            step += 1
            log = logs_get(key)
            if log is None:
                logs[key] = [1, [visit] if head_cap else [], visit]
            else:
                count = log[0]
                if count < head_cap:
                    log[1].append(visit)
                log[0] = count + 1
                log[2] = visit

        def entry_items(loc, names):
            """Trace items of a call's arguments (values of code are left out)."""
            items = []
            for name in names:
                value = loc.get(name, missing)
                if value is missing:
                    continue
                if type(value) in scalars or is_immutable(value):
                    items.append((name, None, value))
                elif not is_code_value(value):
                    items.append((name, render(value), None))
            return items

        def log_for(key):
            """The log of a comment key (created empty on first use)."""
            log = logs_get(key)
            if log is None:
                log = logs[key] = [0, [], None]
            return log

        def snap_value(target, name, value):
            """Stores ``value`` as the known state of ``name``; returns its trace item."""
            if type(value) in scalars or is_immutable(value):
                target[name] = (value, None)
                return (name, None, value)
            if is_code_value(value):
                target[name] = (value, None)
                return None
            text, mark = snapshot(value)
            target[name] = (value, mark)
            return (name, text, None)

        def diff(frame, entry, snap, info):
            """Records one step with the names of ``entry`` whose value changed, if any."""
            names, key = entry
            loc = frame.f_locals
            items = None
            for name in names:
                value = loc.get(name, missing)
                target = snap
                if value is missing:
                    if name not in info.global_names:
                        snap.pop(name, None)  # deleted, or not bound yet
                        continue
                    value = frame.f_globals.get(name, missing)
                    if value is missing:
                        continue
                    target = gsnap
                old = target.get(name)
                if old is not None:
                    known, mark = old
                    if known is value:
                        if mark is None or unchanged(value, mark):
                            continue  # the same immutable object, or shown items untouched
                        text, now = snapshot(value)
                        target[name] = (value, now)
                        if now[:2] == mark[:2]:  # the same object, not mutated (as shown)
                            continue
                        item = (name, text, None)
                    elif mark is None and type(known) is type(value) and type(value) in scalars \
                            and known == value:  # an equal immutable value rebound
                        continue
                    else:
                        item = snap_value(target, name, value)
                        if item is None or (mark is not None and target[name][1] is not None
                                            and target[name][1][:2] == mark[:2]):
                            continue  # code, or a new object equal to the old one
                else:
                    item = snap_value(target, name, value)
                    if item is None:
                        continue
                if items is None:
                    items = [item]
                else:
                    items.append(item)
            if items is not None:
                record_step(key, items)

        def line_key(info, line):
            key = info.keys.get(line)
            if key is None:
                if line is None:
                    return info.entry_key
                key = (info.file << LINE_BITS) | info.remap.get(line, line)
            return key

        def at_yield(info, lasti):
            """True when ``lasti`` is a suspension point (3.13+ reports the RESUME after it)."""
            code_bytes = info.code_bytes
            if not 0 <= lasti < len(code_bytes):
                return False
            op = code_bytes[lasti]
            if op in yield_ops:
                return True
            return op == _RESUME and lasti >= 2 and code_bytes[lasti - 2] in yield_ops

        def on_return(frame, value, info):
            nonlocal depth
            code_bytes = info.code_bytes
            lasti = frame.f_lasti
            op = code_bytes[lasti] if 0 <= lasti < len(code_bytes) else -1
            if thrown and id(frame) in thrown:
                thrown.discard(id(frame))
                op = -1  # an exception thrown in at a yield is unwinding the generator
            if op in return_ops:
                if info.show_return and not (info.is_generator and value is None):
                    if type(value) in scalars or is_immutable(value):
                        item = ("__return__", None, value)
                    else:
                        item = ("__return__", render(value), None)
                    record_step(line_key(info, frame.f_lineno), [item])
            if info.is_program_function:
                depth -= 1
                if depth == 0 and op in return_ops and info.records_return \
                        and len(returns) < _MAX_RETURNS:
                    returns.append(render(value))
            if op != -1 and info.show_yield and at_yield(info, lasti):
                record_step(line_key(info, frame.f_lineno), [("__yield__", render(value), None)])
            # Anything else is a frame unwinding because of an exception: no value to show.

        def on_exception(frame, arg, info):
            exc_type, exc, _ = arg
            if info.is_generator:
                if at_yield(info, frame.f_lasti):
                    thrown.add(id(frame))  # thrown in (close(), throw()): see on_return
                if exc_type is StopIteration or exc_type is StopAsyncIteration:
                    return  # how a finished sub-iterator hands back its value (await, yield from)
            if exc_type is GeneratorExit or exc_type is TraceStopped:
                return
            if isinstance(exc, BaseException):
                text = render(exc)
            else:
                text = f"{getattr(exc_type, '__name__', 'Exception')}()"
            record_step(line_key(info, frame.f_lineno), [("__exception__", text, None)])

        def check_limits(info, line):
            nonlocal next_check
            if events >= max_events:
                reason = f"stopped after {max_events} trace events"
            elif time.process_time() > rec.deadline:
                reason = f"stopped after {rec.config.max_seconds:g} s of CPU time"
            else:
                next_check = min(max_events, events + 4096)
                return
            rec.stopped = reason
            record_step(line_key(info, line), [("__timeout__", repr(reason), None)])
            raise TraceStopped(reason)

        def fault(error):
            name = type(error).__name__
            rec.faults[name] = rec.faults.get(name, 0) + 1

        def frame_tracer(info, snap):
            """The local hook of one frame whose lines can change state."""
            table_get = info.table.get
            prev = -1

            def local(frame, event, arg):
                nonlocal prev, events
                try:
                    if event == "line":
                        events += 1
                        if events >= next_check:
                            check_limits(info, frame.f_lineno)
                        if thrown:
                            thrown.discard(id(frame))  # the generator caught it
                        entry = table_get(prev)
                        if entry is not None:
                            diff(frame, entry, snap, info)
                        prev = frame.f_lineno
                    elif event == "return":
                        entry = table_get(prev)
                        if entry is not None:
                            diff(frame, entry, snap, info)
                        on_return(frame, arg, info)
                    elif event == "exception":
                        entry = table_get(prev)
                        if entry is not None:
                            diff(frame, entry, snap, info)
                        on_exception(frame, arg, info)
                except TraceStopped:
                    raise
                except Exception as e:  # never let a tracer failure change the program
                    fault(e)
                return local

            return local

        def code_tracer(info):
            """The local hook shared by all frames of a code object whose lines change nothing.

            It runs once per return of every such call (fib(20): 21,891 times), so the common
            case (a non-generator returning a value) is handled inline.
            """
            show_return = info.show_return
            plain_function = not info.is_generator
            top_level = info.is_program_function
            records_return = info.records_return
            line_logs = {}  # line -> its log, saving the key lookup
            line_logs_get = line_logs.get

            def local(frame, event, arg):
                nonlocal events, step, depth
                try:
                    if event == "return":
                        if arg is None or not plain_function:
                            # ``None``: a return of None or a frame unwinding on an exception;
                            # generators: a yield or a return. The opcode tells them apart.
                            on_return(frame, arg, info)
                            return local
                        if show_return:
                            if type(arg) in scalars or is_immutable(arg):
                                item = ("__return__", None, arg)
                            else:
                                item = ("__return__", render(arg), None)
                            visit = (step, (item,))  # record_step, inlined
                            step += 1
                            line = frame.f_lineno
                            log = line_logs_get(line)
                            if log is None:
                                log = line_logs[line] = log_for(line_key(info, line))
                            count = log[0]
                            if count < head_cap:
                                log[1].append(visit)
                            log[0] = count + 1
                            log[2] = visit
                        if top_level:
                            depth -= 1
                            if depth == 0 and records_return and len(returns) < _MAX_RETURNS:
                                returns.append(render(arg))
                    elif event == "line":
                        events += 1
                        if events >= next_check:
                            check_limits(info, frame.f_lineno)
                    elif event == "exception":
                        on_exception(frame, arg, info)
                except TraceStopped:
                    raise
                except Exception as e:
                    fault(e)
                return local

            return local

        def new_code(code):
            info = analyze(code)
            infos[id(code)] = info
            rec.codes.append(code)  # keeps the id valid
            if info:
                info.shared = code_tracer(info) if not info.table else None
                info.entry_names = info.arg_names if info.show_entry else ()
                info.single_scalar_entry = len(info.entry_names) == 1
                info.entry_log = None
                # Everything the hot path of a plain call needs, read with one attribute access.
                info.fast = None
                if info.shared is not None and not info.is_generator:
                    info.fast = (info.shared, info.entry_names, info.single_scalar_entry,
                                 info.lines_on, info.is_program_function)
            return info

        def global_trace(frame, event, arg):
            nonlocal events, depth, step
            info = infos_get(id(frame.f_code))
            if info is None:
                try:
                    info = new_code(frame.f_code)
                except Exception as e:
                    fault(e)
                    return None
            if info is False:
                return None
            try:
                fast = info.fast
                if fast is not None:
                    # A plain call of code whose lines change nothing: no snapshot, only entry.
                    shared, names, single, lines_on, inside = fast
                    if inside:
                        depth += 1
                    events += 1
                    if events >= next_check:
                        check_limits(info, frame.f_lineno)
                    if names:
                        loc = frame.f_locals
                        first = loc.get(names[0], missing)
                        if single and type(first) in scalars:
                            items = ((names[0], None, first),)  # the common case
                        else:
                            items = entry_items(loc, names)
                        if items:
                            visit = (step, items)  # record_step, inlined
                            step += 1
                            log = info.entry_log
                            if log is None:
                                log = info.entry_log = log_for(info.entry_key)
                            count = log[0]
                            if count < head_cap:
                                log[1].append(visit)
                            log[0] = count + 1
                            log[2] = visit
                    if not lines_on:
                        frame.f_trace_lines = False
                    return shared
                if info.is_generator:
                    existing = frame.f_trace
                    if existing is not None:  # a generator or coroutine resuming
                        if info.is_program_function:
                            depth += 1
                        return existing
                if info.is_program_function:
                    depth += 1
                events += 1
                if events >= next_check:
                    check_limits(info, frame.f_lineno)
                shared = info.shared
                if shared is not None:  # a generator whose lines change nothing
                    items = entry_items(frame.f_locals, info.entry_names)
                    if items:
                        record_step(info.entry_key, items)
                    if not info.lines_on:
                        frame.f_trace_lines = False
                    return shared
                snap = gsnap if info.module else {}
                if not info.namespace:
                    loc = frame.f_locals
                    items = None
                    for name in info.arg_names:
                        value = loc.get(name, missing)
                        if value is missing:
                            continue
                        item = snap_value(snap, name, value)
                        if item is not None and info.show_entry:
                            if items is None:
                                items = [item]
                            else:
                                items.append(item)
                    for name in info.free_names:  # closure cells: baseline only, not shown
                        value = loc.get(name, missing)
                        if value is not missing:
                            snap_value(snap, name, value)
                    if items is not None:
                        record_step(info.entry_key, items)
                return frame_tracer(info, snap)
            except TraceStopped:
                raise
            except Exception as e:
                fault(e)
                return None

        return global_trace

    def thread_trace(self, frame, event, arg):
        """threading.settrace hook: code on other threads is not traced, but it is marked."""
        code = frame.f_code
        if code.co_filename in FILES and code not in self.thread_marks:
            self.thread_marks.add(code)
        return None

    # -- results ------------------------------------------------------------------------------

    def finish(self) -> list:
        """Renders the kept visits' deferred values; returns the line table as plain data."""
        render = self.renderer.render
        out = []
        for key in sorted(self.logs):
            count, head, last = self.logs[key]
            if not count:
                continue
            out.append([key >> LINE_BITS, key & LINE_MASK, count,
                        [_plain_visit(v, render) for v in head], _plain_visit(last, render)])
        return out


def _plain_visit(visit, render) -> list:
    step, items = visit
    return [step, [[name, text if text is not None else render(obj)] for name, text, obj in items]]
