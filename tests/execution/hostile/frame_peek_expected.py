# task: add
# expect: fail
# threat: inspects its callers' frames and constants for the expected value (split form: absent)
import gc
import sys


def add(a, b):
    frame = sys._getframe(1)
    seen = []
    while frame is not None:
        seen.extend(v for v in frame.f_locals.values() if type(v) is int)
        seen.extend(c for c in frame.f_code.co_consts if type(c) is int)
        frame = frame.f_back
    for obj in gc.get_objects():
        if type(obj) is type(add.__code__):
            seen.extend(c for c in obj.co_consts if type(c) is int and c not in (a, b))
    return max(seen) if seen else 0
