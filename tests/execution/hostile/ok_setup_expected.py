# task: setup_expected
# expect: pass
# threat: none (the setup code's expected values, computed in the judge)
def fact(n):
    out = 1
    for k in range(2, n + 1):
        out *= k
    return out
