# task: must_raise
# expect: pass
# threat: none (raises the ValueError the test expects)
import math


def safe_sqrt(x):
    if x < 0:
        raise ValueError("negative")
    return math.sqrt(x)
