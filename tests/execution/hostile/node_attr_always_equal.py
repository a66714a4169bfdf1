# task: node
# expect: error
# threat: an attribute the test reads holds an object whose __eq__ is always true
class Anything:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


class Node:
    def __init__(self, value, next=None):
        self.value = Anything()
        self.next = next

    def double(self):
        return Anything()


def make_node(value, next=None):
    return Node(value, next)
