# task: add
# expect: pass
# threat: none (about 0.3 s of computation in total)
import time


def add(a, b):
    end = time.perf_counter() + 0.1
    n = 0
    while time.perf_counter() < end:
        n += 1
    return a + b
