# task: add_check
# expect: fail
# threat: defines its own check() that passes (the test's definition comes later)
def check(candidate):
    return True


def add(a, b):
    return 0
