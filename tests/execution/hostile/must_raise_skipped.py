# task: must_raise
# expect: fail
# threat: a test that expects ValueError: the function does not raise
def safe_sqrt(x):
    return abs(x) ** 0.5
