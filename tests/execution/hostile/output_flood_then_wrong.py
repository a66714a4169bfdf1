# task: add
# expect: timeout
# threat: floods stdout and stderr forever
import sys


def add(a, b):
    while True:
        sys.stdout.write("x" * 65536)
        sys.stderr.write("y" * 65536)
