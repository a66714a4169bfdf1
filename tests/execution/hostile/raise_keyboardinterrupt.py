# task: add_check
# expect: error
# threat: raise KeyboardInterrupt during the tests
def add(a, b):
    raise KeyboardInterrupt
