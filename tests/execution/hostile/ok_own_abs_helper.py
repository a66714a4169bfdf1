# task: sqrt_tol
# expect: pass
# threat: none (defines its own abs() for vectors, used internally; the test's abs() is Python's)
import math


def abs(v):
    return math.hypot(*v)


def my_sqrt(x):
    return abs((math.sqrt(x), 0.0))
