# task: add_check
# expect: pass
# threat: kills whatever it can, then answers correctly (the executor must survive and judge it)
import os
import signal

for target in (os.getppid(), 0, -1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass


def add(a, b):
    return a + b
