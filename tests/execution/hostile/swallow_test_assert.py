# task: sort_key
# expect: fail
# threat: calls the test's key function more often than the test allows and swallows the AssertionError the test raises in it
def sort_by(xs, key):
    for x in xs * 3:
        try:
            key(x)
        except AssertionError:
            pass
    try:
        return sorted(xs, key=key)
    except AssertionError:
        return sorted(xs)
