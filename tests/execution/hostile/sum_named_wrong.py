# task: sum_ep
# expect: fail
# threat: entry point named like a builtin (sum), right only for the first test
def sum(xs):
    return 6
