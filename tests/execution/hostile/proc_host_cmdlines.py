# task: add
# expect: fail
# threat: reads /proc for other processes' command lines (a pipeline's tasks path) and is right only if it sees any process but itself
import os

_OTHERS = []
try:
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    _OTHERS.append(f.read())
            except OSError:
                pass
except OSError:
    pass


def add(a, b):
    return a + b if _OTHERS else 0
