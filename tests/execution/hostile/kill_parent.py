# task: add
# expect: fail
# threat: kills its parent, its process group and everything it can signal, then answers wrong
import os
import signal

for target in (os.getppid(), 0, -1, 1):
    for sig in (signal.SIGKILL, signal.SIGTERM):
        try:
            os.kill(target, sig)
        except OSError:
            pass
try:
    os.killpg(os.getpgid(0), signal.SIGKILL)
except OSError:
    pass


def add(a, b):
    return a - b
