# task: add
# expect: error
# threat: exit() at module level, before any test
def add(a, b):
    return 0


exit(0)
