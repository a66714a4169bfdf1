# task: add
# expect: timeout
# threat: blocks forever at import time
import time

time.sleep(10_000)


def add(a, b):
    return a + b
