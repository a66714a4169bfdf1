# task: add
# expect: pass
# threat: leaves a 2,500-deep directory chain in its scratch dir (clean-up must not be poisoned for later runs)
import os

_fd = os.open(".", os.O_RDONLY)
for _ in range(2500):
    os.mkdir("d", dir_fd=_fd)
    _new = os.open("d", os.O_RDONLY, dir_fd=_fd)
    os.close(_fd)
    _fd = _new
os.close(_fd)


def add(a, b):
    return a + b
