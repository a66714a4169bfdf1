# task: add
# expect: error
# threat: reads stdin (must not hang)
def add(a, b):
    return int(input())
