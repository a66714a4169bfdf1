# task: add
# expect: error
# threat: raise SystemExit(0) during a test
def add(a, b):
    raise SystemExit(0)
