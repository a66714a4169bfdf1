# task: decimal_third
# expect: pass
# threat: none (a correct program: its expected value must be computed in the default decimal context whatever an earlier task's test set)
from decimal import Decimal


def third():
    return Decimal(1) / Decimal(3)
