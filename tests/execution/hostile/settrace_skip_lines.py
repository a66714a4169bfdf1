# task: add_check
# expect: fail
# threat: a trace function that jumps over the first asserts of check() (which would fail)
import sys


def add(a, b):
    return a + b if a == b else 0


_jumped = set()


def _local(frame, event, arg):
    if event == "line" and id(frame) not in _jumped:
        _jumped.add(id(frame))
        lines = sorted({line for _, _, line in frame.f_code.co_lines() if line is not None})
        for target in reversed(lines):
            try:
                frame.f_lineno = target
                break
            except ValueError:
                continue
    return _local


def _global(frame, event, arg):
    return _local if frame.f_code.co_name == "check" else None


sys.settrace(_global)
