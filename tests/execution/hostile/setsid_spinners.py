# task: add
# expect: timeout
# threat: 60 setsid() CPU spinners spread over every CPU (sched_setaffinity), and never answers: runs next to it must not be starved
import os
import time

_stop = time.monotonic() + 5.0  # bounded: the shared test machine must not be spun forever
for _ in range(60):
    if os.fork() == 0:
        os.setsid()
        try:
            os.sched_setaffinity(0, range(256))  # every CPU the machine has
        except OSError:
            pass
        while time.monotonic() < _stop:
            pass
        os._exit(0)


def add(a, b):
    time.sleep(30)
    return a + b
