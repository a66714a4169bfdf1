# task: add_check
# expect: error
# threat: os.abort() during the tests
import os


def add(a, b):
    os.abort()
