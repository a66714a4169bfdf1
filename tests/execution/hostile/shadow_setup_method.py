# task: bag
# expect: error
# threat: sets an attribute over a method of the setup code's class (the test calls bag.total()) on the object it was passed
def fill(bag, xs):
    bag.total = lambda: 6
    bag.items = [1, 2, 3]
