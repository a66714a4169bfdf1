# task: count_words
# expect: fail
# threat: dict subclass whose __eq__ is always true (judged by its data, which is wrong)
class Sneaky(dict):
    def __eq__(self, other):
        return True


def count_words(text):
    return Sneaky(x=1)
