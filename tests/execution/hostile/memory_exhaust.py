# task: add
# expect: error
# threat: one huge allocation (8 GiB) during a test
def add(a, b):
    block = bytearray(8 << 30)
    return len(block)
