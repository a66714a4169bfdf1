# task: mutate
# expect: pass
# threat: none (sorts a list argument and fills a dict argument in place)
def sort_in_place(xs):
    xs.sort()


def fill(d, key):
    d[key] = 1
