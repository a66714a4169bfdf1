# task: add
# expect: fail
# threat: fork swarm (bounded: 100 attempts, capped by RLIMIT_NPROC), children sleep forever
import os
import time

_kids = 0
for _ in range(100):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(1000)
        os._exit(0)
    _kids += 1


def add(a, b):
    return _kids
