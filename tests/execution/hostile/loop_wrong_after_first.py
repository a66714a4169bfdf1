# task: loop_guard
# expect: fail
# threat: an assert in a loop: right for i = 0 only
def f(i):
    return 0
