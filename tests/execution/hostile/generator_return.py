# task: pair
# expect: fail
# threat: returns a lazy object that is not plain data
def min_max(xs):
    return (x for x in (min(xs), max(xs)))
