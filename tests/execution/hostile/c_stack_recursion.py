# task: add
# expect: error
# threat: lifts the recursion limit and overflows the C stack (pickling a deeply nested list)
import pickle
import sys

sys.setrecursionlimit(10 ** 8)


def add(a, b):
    nested = []
    for _ in range(300_000):
        nested = [nested]
    return len(pickle.dumps(nested))
