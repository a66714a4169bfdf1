# task: add
# expect: error
# threat: four forked children each touch 80 MB: over the run's memory budget only if counted across the tree
import os
import time

_pipes = []
for _ in range(4):
    r, w = os.pipe()
    if os.fork() == 0:
        block = bytearray(80 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        os.write(w, b"x")
        time.sleep(30)
        os._exit(0)
    os.close(w)
    _pipes.append(r)
for r in _pipes:
    os.read(r, 1)  # the child touched all of its block, or died trying (EOF)


def add(a, b):
    return a + b
