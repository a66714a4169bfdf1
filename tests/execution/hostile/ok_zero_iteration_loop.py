# task: zero_loop
# expect: pass
# threat: none (an assert in a loop that correctly runs zero times)
def evens(xs):
    return [x for x in xs if x % 2 == 0]
