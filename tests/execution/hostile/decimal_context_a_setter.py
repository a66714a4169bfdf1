# task: decimal_context_setter
# expect: pass
# threat: none (a correct program whose honest test sets decimal's context to 6 digits in the judge: the next task's tests must not inherit it)
from decimal import Decimal


def double(x):
    return x * 2
