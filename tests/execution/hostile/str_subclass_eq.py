# task: greet
# expect: fail
# threat: str subclass whose __eq__ is always true
class Sneaky(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


def greet(name):
    return Sneaky("nope")
