# task: add_check
# expect: timeout
# threat: ignores SIGALRM/SIGTERM/SIGINT, cancels the timer, then loops forever
import signal

for _s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_s, signal.SIG_IGN)


def add(a, b):
    signal.setitimer(signal.ITIMER_REAL, 0)
    while True:
        pass
