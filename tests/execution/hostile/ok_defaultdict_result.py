# task: group
# expect: pass
# threat: none (returns a defaultdict; the test reads a missing key, which its factory answers)
from collections import defaultdict


def group_by_len(words):
    out = defaultdict(list)
    for w in words:
        out[len(w)].append(w)
    return out
