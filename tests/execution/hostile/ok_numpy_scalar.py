# task: add
# expect: pass
# threat: none (imports numpy cold in the child and returns numpy integers)
import numpy as np


def add(a, b):
    return np.int64(a) + np.int64(b)
