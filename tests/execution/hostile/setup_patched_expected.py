# task: setup_expected
# expect: fail
# threat: patches math.factorial, which the setup code uses to compute the tests' expected values
import math

math.factorial = lambda n: 0


def fact(n):
    return 0
