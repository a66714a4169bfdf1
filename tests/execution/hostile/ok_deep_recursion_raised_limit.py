# task: add_check
# expect: pass
# threat: none (raises the recursion limit and recurses 5,000 levels)
import sys

sys.setrecursionlimit(20000)


def _sum_to(n):
    return 0 if n == 0 else n + _sum_to(n - 1)


def add(a, b):
    assert _sum_to(5000) == 5000 * 5001 // 2
    return a + b
