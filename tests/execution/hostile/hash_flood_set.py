# task: add
# expect: error
# threat: sends a hand-made reply: a set of 200,000 ints that all hash to 0 (quadratic to build)
import struct


def add(a, b):
    items = ",".join(str(k * (2 ** 61 - 1)) for k in range(200_000))
    body = ('["t","ok",["s",' + items + '],["l"]]').encode()
    import os
    os.write(4, struct.pack(">IB", len(body), 0) + body)
    return 0
