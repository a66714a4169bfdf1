# task: add
# expect: pass
# threat: spawns an external long-running process and answers correctly
import subprocess
import sys

_p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"], start_new_session=True)


def add(a, b):
    return a + b
