# task: add
# expect: timeout
# threat: loops forever and swallows every exception (including the per-test alarm)
def add(a, b):
    while True:
        try:
            while True:
                pass
        except BaseException:
            pass
