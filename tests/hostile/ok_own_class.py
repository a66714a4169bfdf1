# task: own_class
# expect: pass
# threat: none (returns objects of its own class (tests use is None / type name / pass them back))
class Box:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return True


def make(n):
    return None if n is None else Box(n)


def size(box):
    return box.n
