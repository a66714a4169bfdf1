# task: iterables
# expect: pass
# threat: none (returns a generator, dict views, a range, map and filter objects)
from collections import Counter


def gen(n):
    for i in range(n):
        yield i


def keys(d):
    return d.keys()


def counts(s):
    return Counter(s)


def rng(n):
    return range(n)


def doubled(xs):
    return map(lambda x: 2 * x, xs)


def odds(xs):
    return filter(lambda x: x % 2, xs)


def iterables():
    return {"gen": gen, "keys": keys, "counts": counts, "rng": rng, "doubled": doubled,
            "odds": odds}
