# task: ordered
# expect: fail
# threat: returns an OrderedDict in the wrong order (rebuilt as a dict, order would not be compared)
from collections import OrderedDict


def first_seen(s):
    out = {}
    for i, ch in enumerate(s):
        out.setdefault(ch, i)
    return OrderedDict(sorted(out.items()))
