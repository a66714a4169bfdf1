# task: pair
# expect: pass
# threat: none (returns a namedtuple where a tuple is expected)
from collections import namedtuple

MinMax = namedtuple("MinMax", "lo hi")


def min_max(xs):
    return MinMax(min(xs), max(xs))
