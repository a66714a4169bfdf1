# task: add_check
# expect: error
# threat: os._exit(0) during the tests (exit status 0, no report)
import os


def add(a, b):
    os._exit(0)
