# task: mutate
# expect: pass
# threat: none (sorts a list argument and fills a dict argument in place)
def sort_in_place(xs, d=None, key=None):
    xs.sort()
    if d is not None:
        d[key] = 1
