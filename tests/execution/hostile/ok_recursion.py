# task: add
# expect: pass
# threat: none (recursion a few hundred levels deep)
def _depth(n):
    return 0 if n == 0 else 1 + _depth(n - 1)


def add(a, b):
    assert _depth(800) == 800
    return a + b
