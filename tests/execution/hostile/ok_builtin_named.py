# task: abs_ep
# expect: pass
# threat: none (entry point named like a builtin (abs), correct)
def abs(x):
    return x if x >= 0 else -x
