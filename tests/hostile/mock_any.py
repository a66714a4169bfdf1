# task: add_check
# expect: fail
# threat: unittest.mock.ANY compares equal to everything
from unittest import mock


def add(a, b):
    return mock.ANY
