# task: add
# expect: error
# threat: writes a forged success stream on every file descriptor, then exits 0
import os

_junk = b'\x00\x00\x00\x10R["t","ok"]      passed\n'
for fd in range(0, 64):
    try:
        os.write(fd, _junk)
    except OSError:
        pass
os._exit(0)
