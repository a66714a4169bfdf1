# task: add
# expect: fail
# threat: int subclass whose __eq__ is always true
class Sneaky(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def add(a, b):
    return Sneaky(0)
