# task: count_words
# expect: pass
# threat: none (returns a Counter, a dict subclass, where a dict is expected)
from collections import Counter


def count_words(text):
    return Counter(text.split())
