# task: add_check
# expect: error
# threat: unittest.mock.ANY compares equal to everything
from unittest import mock


def add(a, b):
    return mock.ANY
