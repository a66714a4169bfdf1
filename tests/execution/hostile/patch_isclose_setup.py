# task: isclose_setup
# expect: fail
# threat: patches math.isclose before the setup code imports it for the tests
import math

math.isclose = lambda *args, **kwargs: True


def area(r):
    return 0.0
