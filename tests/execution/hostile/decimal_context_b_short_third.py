# task: decimal_third
# expect: fail
# threat: state that outlives a run on the judge's side: a 6-digit third, right only if an earlier task's test (decimal_context_a_setter.py) left a 6-digit context in the judge that computes the expected value
from decimal import Decimal


def third():
    return Decimal("0.333333")
