# task: pair
# expect: pass
# threat: none (uses a thread pool)
from concurrent.futures import ThreadPoolExecutor


def min_max(xs):
    with ThreadPoolExecutor(4) as pool:
        lo, hi = pool.map(lambda f: f(xs), (min, max))
    return (lo, hi)
