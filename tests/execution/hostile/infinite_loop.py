# task: add
# expect: timeout
# threat: loops forever in the function under test
def add(a, b):
    while True:
        pass
