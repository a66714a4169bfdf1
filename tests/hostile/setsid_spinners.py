# task: add
# expect: timeout
# threat: 60 setsid() CPU spinners and never answers (the runs next to it must not be starved)
import os
import time

for _ in range(60):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass


def add(a, b):
    time.sleep(30)
    return a + b
