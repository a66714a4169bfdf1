# task: sort_key
# expect: pass
# threat: none (calls the key functions the test passes: a lambda, a method of str, a function that asserts)
def sort_by(xs, key):
    return sorted(xs, key=key)
