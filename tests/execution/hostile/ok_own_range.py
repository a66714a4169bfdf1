# task: loop_guard
# expect: pass
# threat: none (defines its own two-argument range() helper; the test's range() is Python's)
import builtins


def range(lo, hi):
    return list(builtins.range(lo, hi + 1))


def f(x):
    return sum(2 for _ in range(1, x))
