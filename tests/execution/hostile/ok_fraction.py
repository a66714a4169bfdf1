# task: fraction
# expect: pass
# threat: none (returns a Fraction)
from fractions import Fraction


def half(x):
    return Fraction(x, 2)
