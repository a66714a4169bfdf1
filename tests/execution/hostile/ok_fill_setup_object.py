# task: bag
# expect: pass
# threat: none (fills the setup code's object in place; the test calls its class's method)
def fill(bag, xs):
    bag.items.extend(xs)
