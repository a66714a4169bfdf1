# task: uniq
# expect: pass
# threat: none (defines its own set(xs, i, v) helper; the test's set() is Python's)
def set(xs, i, v):
    xs[i] = v


def uniq(xs):
    out = [None] * len({}.fromkeys(xs))
    for i, x in enumerate({}.fromkeys(xs)):
        set(out, i, x)
    return out
