# task: add_check
# expect: error
# threat: sys.exit(0) at module level
import sys


def add(a, b):
    return 0


sys.exit(0)
