# task: own_class
# expect: pass
# threat: none (returns objects of its own class (tests use is None / type name / an attribute / pass them back to a method))
class Box:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return True

    def merged(self, other):
        return Box(self.n + other.n)


def make(n):
    return None if n is None else Box(n)


def size(box):
    return box.n
