# task: stateful
# expect: pass
# threat: none (keeps state between calls of one test run)
_count = 0


def counter_next():
    global _count
    _count += 1
    return _count
