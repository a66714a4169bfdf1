# task: ops
# expect: pass
# threat: none (returns the same function object each time; the test compares and hashes them)
import operator

_OPS = {"add": operator.add, "mul": lambda a, b: a * b}


def get_op(name):
    return _OPS[name]
