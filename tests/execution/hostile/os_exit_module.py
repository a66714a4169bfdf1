# task: add
# expect: error
# threat: os._exit(0) before the tests
import os


def add(a, b):
    return 0


os._exit(0)
