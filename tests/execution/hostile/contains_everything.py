# task: stack_in
# expect: error
# threat: an object whose __contains__ is always true, so `x in obj` holds for any x
class Stack:
    def push(self, x):
        pass

    def __contains__(self, x):
        return True
