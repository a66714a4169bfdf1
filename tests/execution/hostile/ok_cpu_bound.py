# task: add
# expect: pass
# threat: none (about 0.2 s of CPU per call, counted in operations, not in wall time, so a run that loses its CPU to another run's processes is slower)


def add(a, b):
    n = 0
    for i in range(7_000_000):
        n += i & 7
    return a + b if n >= 0 else None
