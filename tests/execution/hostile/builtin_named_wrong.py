# task: abs_ep
# expect: fail
# threat: entry point named like a builtin (abs), wrong for negatives
def abs(x):
    return x
