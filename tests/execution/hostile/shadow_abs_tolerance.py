# task: sqrt_tol
# expect: fail
# threat: defines abs() returning 0, so a tolerance assert (abs(got - want) < eps) holds for any answer
def abs(x):
    return 0


def my_sqrt(x):
    return 0.0
