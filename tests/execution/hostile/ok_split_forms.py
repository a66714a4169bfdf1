# task: split_forms
# expect: pass
# threat: none (a correct program for tests written with star-args, walrus, all(<genexp>) and calls on the expected side)
def add(a, b):
    return a + b
