# task: add
# expect: pass
# threat: leaves a daemon (setsid + double fork, ignores SIGTERM) running; answers correctly
import os
import signal
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        time.sleep(1000)
    os._exit(0)


def add(a, b):
    return a + b
