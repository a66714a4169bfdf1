# task: closure
# expect: pass
# threat: none (returns a closure the test calls)
def adder(n):
    def add(x):
        return x + n
    return add
