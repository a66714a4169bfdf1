# task: add_check
# expect: error
# threat: one huge allocation at import time
_block = bytes(16 << 30)


def add(a, b):
    return a + b
