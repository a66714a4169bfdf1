# task: add
# expect: fail
# threat: patch operator.eq / operator.__eq__ to always return True
import operator

operator.eq = operator.__eq__ = lambda a, b: True
operator.ne = operator.__ne__ = lambda a, b: False


def add(a, b):
    return -1
