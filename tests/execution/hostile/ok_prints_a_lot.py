# task: add
# expect: pass
# threat: none (prints 8 MB to stdout and stderr, more than is kept)
import sys

for _ in range(64):
    print("x" * 65536)
    sys.stderr.write("e" * 65536 + "\n")


def add(a, b):
    print(f"adding {a} and {b}")
    return a + b
