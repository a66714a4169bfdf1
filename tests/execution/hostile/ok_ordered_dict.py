# task: ordered
# expect: pass
# threat: none (returns an OrderedDict in insertion order; the test compares it with one)
from collections import OrderedDict


def first_seen(s):
    out = OrderedDict()
    for i, ch in enumerate(s):
        out.setdefault(ch, i)
    return out
