# task: add_check
# expect: error
# threat: always-true __eq__ inside a HumanEval-style check(candidate)
class Anything:
    def __eq__(self, other):
        return True


def add(a, b):
    return Anything()
