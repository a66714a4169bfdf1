# task: pair
# expect: fail
# threat: patch builtins (tuple, isinstance, len) and AssertionError
import builtins

builtins.tuple = lambda *a, **k: (1, 3)
builtins.len = lambda *a: 0
builtins.isinstance = lambda *a: True
builtins.AssertionError = type("Ignored", (Exception,), {})


def min_max(xs):
    return (0, 0)
