# task: add
# expect: error
# threat: returns an object whose __eq__ is always true
class Anything:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__


def add(a, b):
    return Anything()
