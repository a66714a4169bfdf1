# task: add
# expect: error
# threat: announces a 60 MB reply frame (the judge must refuse it before reading or decoding)
import os
import struct


def add(a, b):
    os.write(4, struct.pack(">IB", 60 << 20, 0) + b'["t","ok",["l"' + b',"s"' * 10000)
    return 0
